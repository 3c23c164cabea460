"""TF Serving's `ModelService`: `GetModelStatus`.

As in `tensorflow_serving/apis/model_service.proto`, the answer lists every
version the server has seen, newest first, with its state (`LOADING`,
`AVAILABLE`, `END`) and, for a version that failed to load, the error.
"""

import grpc
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc

from serving.request_validation import RequestError
from serving.request_validation import answers_errors

# `tensorflow.error.Code.UNKNOWN`: the code TF Serving gives a failed load.
_UNKNOWN_ERROR = 2


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """TF Serving's `ModelService` for the versions of one model.

    Args:
        versions: `serving.model_versions.ModelVersions`.

    Example:
    ```python
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelService(versions), server
    )
    ```
    """

    def __init__(self, versions):
        self.versions = versions

    @answers_errors
    def GetModelStatus(self, request, context):
        """`GetModelStatusRequest` -> one `ModelVersionStatus` per version."""
        spec = request.model_spec
        states = self.versions.states()
        if spec.name != self.versions.model_name or not states:
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"Could not find any versions of model {spec.name!r}.",
            )
        if spec.HasField("version"):
            if spec.version.value not in states:
                raise RequestError(
                    grpc.StatusCode.NOT_FOUND,
                    f"Could not find version {spec.version.value} of model "
                    f"{spec.name!r}.",
                )
            states = {spec.version.value: states[spec.version.value]}
        response = get_model_status_pb2.GetModelStatusResponse()
        for version in sorted(states, reverse=True):
            state, message = states[version]
            status = response.model_version_status.add()
            status.version = version
            status.state = state
            if message:
                status.status.error_code = _UNKNOWN_ERROR
                status.status.error_message = message
        return response
