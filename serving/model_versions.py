"""The versions of one served model: loading, warm-up and hot reload.

Like `tensorflow_model_server`'s default "latest" version policy, the highest
integer folder under `MODEL_BASE_PATH/MODEL_NAME/` that loads is served; a
poller loads a newer one in the background, replays its warm-up requests and
only then swaps it in, so requests never wait for a load and a version that
fails to load never replaces a working one. A folder that appears while the
server runs is loaded only once it looks complete (`saved_model.pb` and
`variables/variables.index`) and has not changed between two polls, so a
`cp -r` in progress is not loaded half-written. A version that fails to load
is tried again at later polls, after a backoff that doubles per failure
(sooner if its files change), each attempt logged once. If the served
version's folder disappears, the highest other version that loads is served.
"""

import logging
import os
import threading
import time

import grpc
import tensorflow as tf
import tensorflow_text  # noqa: F401  Registers the TF Text ops graphs may use.
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import prediction_log_pb2

from cmaclip_tf.inference.model_versions import load_error_line
from cmaclip_tf.inference.model_versions import version_fingerprint
from cmaclip_tf.inference.model_versions import version_numbers
from cmaclip_tf.limits.serving_limits import ServingLimits
from serving.request_validation import RequestError
from serving.request_validation import invalid_argument
from serving.request_validation import validate_inputs

logger = logging.getLogger("serving.server")

DEFAULT_SIGNATURE = "serving_default"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
# TF Serving replays at most this many warm-up records.
MAX_WARMUP_RECORDS = 1000
# A version that failed to load is tried again after this many seconds,
# doubled per failure up to the maximum.
RETRY_SECONDS = 2.0
MAX_RETRY_SECONDS = 300.0

State = get_model_status_pb2.ModelVersionStatus.State


class ServableVersion:
    """One loaded SavedModel version and its signatures.

    Args:
        name: string. The model's name.
        version: int. The version number (its folder's name).
        path: string. The version's folder.

    Example:
    ```python
    servable = ServableVersion("cmaclip", 1, "/models/cmaclip/1")
    outputs = servable.run("serving_default", {"image_bytes": images, "text": texts})
    ```
    """

    def __init__(self, name, version, path):
        self.name = name
        self.version = version
        self.path = path
        self.module = tf.saved_model.load(path)
        self.signatures = dict(self.module.signatures)
        if not self.signatures:
            raise ValueError(f"{path} has no serving signatures.")
        # name -> {input name: TensorSpec}
        self.input_specs = {
            name: dict(fn.structured_input_signature[1])
            for name, fn in self.signatures.items()
        }
        self.signature_defs = _read_signature_defs(path)

    def input_specs_of(self, signature_name):
        """The signature's `{input name: TensorSpec}`; `RequestError` if unknown."""
        if signature_name not in self.signatures:
            raise invalid_argument(
                f"Serving signature name: {signature_name!r} not found in "
                f"signature def; the model has {sorted(self.signatures)}."
            )
        return self.input_specs[signature_name]

    def output_names(self, signature_name):
        return list(self.signatures[signature_name].structured_outputs)

    def run(self, signature_name, inputs):
        """Runs a signature on numpy inputs; returns numpy outputs."""
        function = self.signatures[signature_name]
        specs = self.input_specs[signature_name]
        tensors = {
            key: tf.constant(value, dtype=specs[key].dtype)
            for key, value in inputs.items()
        }
        outputs = function(**tensors)
        return {key: value.numpy() for key, value in outputs.items()}


def _read_signature_defs(path):
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    return saved_model.meta_graphs[0].signature_def


class ModelVersions:
    """Loads, warms up and hot-swaps the versions of one model.

    Args:
        model_base_path: string. The folder holding `model_name/<version>/`.
        model_name: string. The model's name, as clients put it in
            `model_spec`.
        limits: `ServingLimits`, which the warm-up requests must meet too.

    Example:
    ```python
    versions = ModelVersions("/models", "cmaclip")
    versions.poll_once()  # Loads the highest version.
    versions.start_polling(interval_seconds=1.0)
    servable = versions.servable_for(request.model_spec)
    ```
    """

    def __init__(self, model_base_path, model_name, limits=ServingLimits()):
        self.model_name = model_name
        self.model_dir = os.path.join(model_base_path, model_name)
        self.limits = limits
        self._current = None
        self._states = {}  # version -> (State, error message)
        self._polls = 0
        self._seen = {}  # version -> its fingerprint at the last poll
        self._failed = {}  # version -> (fingerprint, failures, retry time)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._poller = None

    @property
    def current(self):
        """The `ServableVersion` served now, or None before the first load."""
        return self._current

    def states(self):
        """`{version: (State, error message)}` of every version seen."""
        with self._lock:
            return dict(self._states)

    # --- Loading. ---

    def poll_once(self, now=None):
        """Serves the highest version that loads; True if it swapped one in.

        Tries the versions above the served one, highest first (every
        version, if the served one's folder is gone). A version is tried
        when its folder looks complete and is unchanged since the last poll
        (at the first poll, complete is enough), and, after a failure, once
        its backoff has passed or its files changed.
        """
        now = time.monotonic() if now is None else now
        first_poll = self._polls == 0
        self._polls += 1
        seen = {}
        for version in version_numbers(self.model_dir):
            seen[version] = version_fingerprint(
                os.path.join(self.model_dir, str(version))
            )
        previous, self._seen = self._seen, seen
        current = self._current
        floor = -1  # The served version's folder is gone: any version may serve.
        if current is not None and current.version in seen:
            floor = current.version
        for version in sorted(seen, reverse=True):
            if version <= floor:
                break
            fingerprint = seen[version]
            if fingerprint is None or not (
                first_poll or previous.get(version) == fingerprint
            ):
                continue  # Still being written.
            failed = self._failed.get(version)
            if failed is not None and failed[0] == fingerprint and now < failed[2]:
                continue  # Backing off.
            if self._load(version, fingerprint, now, current):
                return True
        return False

    def _load(self, version, fingerprint, now, current):
        """Loads, warms up and swaps in `version`; False if it failed."""
        self._set_state(version, State.LOADING)
        try:
            servable = ServableVersion(
                self.model_name, version, os.path.join(self.model_dir, str(version))
            )
            self._warm_up(servable)
        except Exception as error:  # A bad version must not stop the server.
            failures = 1
            if version in self._failed and self._failed[version][0] == fingerprint:
                failures = self._failed[version][1] + 1
            delay = min(RETRY_SECONDS * 2 ** (failures - 1), MAX_RETRY_SECONDS)
            self._failed[version] = (fingerprint, failures, now + delay)
            message = load_error_line(error)
            logger.error(
                "Could not load version %d (attempt %d; next try in %.0f s or "
                "when its files change): %s", version, failures, delay, message,
            )
            self._set_state(version, State.END, f"load failed: {message}")
            return False
        self._failed.pop(version, None)
        with self._lock:
            self._current = servable
            self._states[version] = (State.AVAILABLE, "")
            if current is not None and current.version != version:
                # In-flight requests keep their reference until they finish.
                self._states[current.version] = (State.END, "")
        logger.info(
            "Serving %s version %d from %s", self.model_name, version, servable.path
        )
        return True

    def _set_state(self, version, state, message=""):
        with self._lock:
            self._states[version] = (state, message)

    def start_polling(self, interval_seconds):
        """Polls for newer versions every `interval_seconds`, in a thread."""

        def poll():
            while not self._stop.wait(interval_seconds):
                try:
                    self.poll_once()
                except Exception:  # Keep polling whatever happens.
                    logger.exception("Version poll failed")

        self._poller = threading.Thread(target=poll, name="version-poller", daemon=True)
        self._poller.start()

    def stop_polling(self):
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)

    def _warm_up(self, servable):
        """Replays `assets.extra/tf_serving_warmup_requests`, as TF Serving does."""
        path = os.path.join(servable.path, WARMUP_FILE)
        if not os.path.isfile(path):
            return 0
        count = 0
        for record in tf.data.TFRecordDataset(path).take(MAX_WARMUP_RECORDS):
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            if not log.HasField("predict_log"):
                continue
            request = log.predict_log.request
            signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
            inputs = validate_inputs(
                servable.input_specs_of(signature_name), signature_name,
                request.inputs, self.limits,
            )
            servable.run(signature_name, inputs)
            count += 1
        logger.info("Warmed up version %d with %d requests", servable.version, count)
        return count

    # --- Which version a request gets. ---

    def servable_for(self, model_spec):
        """The `ServableVersion` a request's `ModelSpec` names; `RequestError` if none.

        No version: the latest. A version number other than the one served
        is `NOT_FOUND`, as TF Serving answers; version labels are not kept.
        """
        if model_spec.name != self.model_name:
            raise _not_found(
                f"Servable not found for request: model {model_spec.name!r}; "
                f"this server serves {self.model_name!r}."
            )
        if model_spec.version_label:
            raise invalid_argument(
                "Version labels are not supported here; ask for a version "
                "number or none (the latest)."
            )
        servable = self._current
        if servable is None:
            raise _not_found(
                f"Servable not found for request: no version of "
                f"{self.model_name!r} is loaded yet (looking in {self.model_dir})."
            )
        if (
            model_spec.HasField("version")
            and model_spec.version.value != servable.version
        ):
            raise _not_found(
                f"Servable not found for request: {self.model_name!r} version "
                f"{model_spec.version.value}; version {servable.version} is served."
            )
        return servable


def _not_found(message):
    return RequestError(grpc.StatusCode.NOT_FOUND, message)
