"""TF Serving's `PredictionService`: `Predict` and `GetModelMetadata`.

The methods follow `tensorflow_serving/apis/prediction_service.proto`: a
`PredictRequest` names a model (`model_spec`: name, optional version,
signature), carries its `inputs` as `TensorProto`s and may ask for only some
outputs (`output_filter`); the `PredictResponse` names the version that
answered and carries the `outputs`. Errors are gRPC statuses, as TF Serving
sends them: `NOT_FOUND` for an unknown model or version, `INVALID_ARGUMENT`
for a bad request (with a readable message), `RESOURCE_EXHAUSTED` when the
model runs out of memory.
"""

import re

import grpc
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving.model_versions import DEFAULT_SIGNATURE
from serving.request_validation import RequestError
from serving.request_validation import answers_errors
from serving.request_validation import invalid_argument
from serving.request_validation import validate_inputs

SIGNATURE_DEF_FIELD = "signature_def"


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """TF Serving's `PredictionService` for the versions of one model.

    Args:
        versions: `serving.model_versions.ModelVersions`.
        limits: `ServingLimits`, what one request may hold.

    Example:
    ```python
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(8))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(versions, ServingLimits()), server
    )
    ```
    """

    def __init__(self, versions, limits):
        self.versions = versions
        self.limits = limits

    @answers_errors
    def Predict(self, request, context):
        """`PredictRequest` -> `PredictResponse`: runs one signature."""
        servable = self.versions.servable_for(request.model_spec)
        signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        inputs = validate_inputs(
            servable.input_specs_of(signature_name), signature_name,
            request.inputs, self.limits,
        )
        output_names = _wanted_outputs(
            servable.output_names(signature_name), request.output_filter,
            signature_name,
        )
        outputs = _run(servable, signature_name, inputs)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature_name
        for key in output_names:
            response.outputs[key].CopyFrom(tf.make_tensor_proto(outputs[key]))
        return response

    @answers_errors
    def GetModelMetadata(self, request, context):
        """`GetModelMetadataRequest` -> the served version's `SignatureDefMap`."""
        servable = self.versions.servable_for(request.model_spec)
        fields = list(request.metadata_field)
        if not fields:
            raise invalid_argument(
                "GetModelMetadataRequest must ask for metadata_field "
                f"{SIGNATURE_DEF_FIELD!r}."
            )
        unsupported = [f for f in fields if f != SIGNATURE_DEF_FIELD]
        if unsupported:
            raise invalid_argument(
                f"Metadata field(s) {unsupported} are not supported; "
                f"only {SIGNATURE_DEF_FIELD!r}."
            )
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, value in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(value)
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
        return response


def _wanted_outputs(output_names, output_filter, signature_name):
    """The outputs to send: `output_filter`'s, or all when it is empty."""
    wanted = list(output_filter) or output_names
    unknown = sorted(set(wanted) - set(output_names))
    if unknown:
        raise invalid_argument(
            f"output_filter names {unknown}, which signature {signature_name!r} "
            f"does not have; it has {sorted(output_names)}."
        )
    return wanted


def _run(servable, signature_name, inputs):
    """Runs the model; its runtime errors become readable `RequestError`s."""
    try:
        return servable.run(signature_name, inputs)
    except tf.errors.InvalidArgumentError as error:
        raise invalid_argument(readable_tf_error(error.message)) from None
    except tf.errors.ResourceExhaustedError as error:
        raise RequestError(
            grpc.StatusCode.RESOURCE_EXHAUSTED, readable_tf_error(error.message)
        ) from None
    except UnicodeDecodeError as error:
        # TF quotes the offending input in the message; not valid UTF-8.
        raise invalid_argument(f"The model rejected the input ({error}).") from None


_TF_CONTEXT_LINE = re.compile(
    r"^(Graph execution error:|Detected at node|<stack traces unavailable>|\s*\[\[)"
)


def readable_tf_error(message):
    """The cause of a TF runtime error without its graph context.

    Drops "Graph execution error", "Detected at node ..." and
    "[[{{node ...}}]]" lines, which say nothing to a client.

    Example:
    ```python
    readable_tf_error("Graph execution error:\\n...\\njpeg::Uncompress failed.")
    # "jpeg::Uncompress failed."
    ```
    """
    lines = [
        re.sub(r"\s*\[Op:[^\]]*\]$", "", line).strip()
        for line in message.splitlines()
        if line.strip() and not _TF_CONTEXT_LINE.match(line)
    ]
    return " ".join(lines) or message.strip()
