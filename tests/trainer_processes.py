"""Running the trainers' command lines in subprocesses, and reading what they wrote.

A trainer under two logical CPU devices or two multi-worker processes needs
a process of its own (devices are fixed when TensorFlow starts), so the
end-to-end tests run `trainers/run.py` and `trainers/pretrain.py` as scripts.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import h5py
import numpy as np
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Runs a trainer's `main` with the CPU split into two logical devices.
TWO_CPUS = (
    "import importlib, sys, tensorflow as tf\n"
    "cpu = tf.config.list_physical_devices('CPU')[0]\n"
    "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
    "main = importlib.import_module(sys.argv[1]).main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)


def trainer_env(**extra):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONUNBUFFERED="1")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def script(name):
    """The path of `trainers/<name>.py`."""
    return os.path.join(REPO, "trainers", f"{name}.py")


def run_trainer(name, args, check=True, **kwargs):
    """Runs `trainers/<name>.py args`; returns its stdout (raises on failure)."""
    result = subprocess.run(
        [sys.executable, script(name), *args],
        env=trainer_env(), capture_output=True, text=True, timeout=600, **kwargs,
    )
    if check and result.returncode != 0:
        raise AssertionError(result.stdout[-3000:] + result.stderr[-3000:])
    return result.stdout


def trainer_error(name, args):
    """The stderr of `trainers/<name>.py args`, which must fail as a user
    error (exit status 2)."""
    result = subprocess.run(
        [sys.executable, script(name), *args],
        env=trainer_env(), capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stderr


def run_on_two_cpus(name, args):
    """Runs `trainers/<name>.py`'s main with two logical CPU devices."""
    result = subprocess.run(
        [sys.executable, "-c", TWO_CPUS, f"trainers.{name}", *args],
        env=trainer_env(), capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_workers(name, args):
    """Runs `trainers/<name>.py` as two multi-worker processes on 127.0.0.1.

    Returns both workers' outputs (chief first); each must succeed.
    """
    cluster = {"worker": [f"127.0.0.1:{free_port()}" for _ in range(2)]}
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster,
                                "task": {"type": "worker", "index": index}})
        processes.append(subprocess.Popen(
            [sys.executable, script(name), *args],
            env=trainer_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        ))
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    for p, out in zip(processes, outputs):
        assert p.returncode == 0, out[-3000:]
    return outputs


def h5_weights(path):
    """All arrays of a Keras `.weights.h5` file, by path."""
    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: arrays.__setitem__(name, obj[()])
            if isinstance(obj, h5py.Dataset) else None
        )
    return arrays


def assert_same_weights(a, b, atol=0.0):
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], atol=atol, err_msg=key)


def latest_weights(stage_dir, worker=None):
    """The model's variables in a stage's latest checkpoint (no optimizer)."""
    folder = os.path.join(stage_dir, "latest")
    if worker is not None:
        folder = os.path.join(stage_dir, f".worker_{worker}", "latest")
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(folder))
    return {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if name.startswith("model/") and "OPTIMIZER_SLOT" not in name
    }


def tensorboard_scalars(folder):
    """`{tag: [values in order]}` of the scalars in a TensorBoard folder."""
    values = {}
    for path in sorted(tf.io.gfile.glob(os.path.join(folder, "*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if not value.HasField("tensor"):
                    continue
                array = tf.make_ndarray(value.tensor)
                if array.shape == () and array.dtype.kind == "f":
                    values.setdefault(value.tag, []).append(float(array))
    return values


def latest_position(stage_dir):
    """`(epoch, step)` of a stage's latest checkpoint, or None."""
    index = os.path.join(stage_dir, "latest", "checkpoint")
    if not os.path.isfile(index):
        return None
    try:
        path = tf.train.latest_checkpoint(os.path.join(stage_dir, "latest"))
        reader = tf.train.load_checkpoint(path)
        return (int(reader.get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE")),
                int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")))
    except (tf.errors.OpError, ValueError, TypeError):
        return None  # Caught between writes; look again.


def kill_mid_epoch(name, args, stage_dir, timeout=300):
    """Starts `trainers/<name>.py`, SIGKILLs it after a mid-epoch checkpoint
    of epoch 2 or later; returns that checkpoint's `(epoch, step)`."""
    process = subprocess.Popen(
        [sys.executable, script(name), *args], env=trainer_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + timeout
    position = None
    while time.time() < deadline and process.poll() is None:
        position = latest_position(stage_dir)
        if position is not None and position[0] >= 1 and position[1] > 0:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    process.wait()
    assert process.returncode == -signal.SIGKILL, (
        "the run ended before a mid-epoch checkpoint")
    return position
