"""Picking a model version as TF Serving's `latest` policy: the highest that
loads. `Predictor.load`, `serving.predict --model` and the development
server skip half-copied and corrupt version folders; the server tries a
failed version again at later polls, with backoff. The fast tests use
stand-in folders and loaders; the `large` ones real SavedModels."""

import logging
import os
import shutil

import pytest

from cmaclip_tf import Predictor
from cmaclip_tf.inference.model_versions import NoLoadableVersionError
from cmaclip_tf.inference.model_versions import load_highest_version
from cmaclip_tf.inference.model_versions import version_fingerprint
from test_predictor import exported  # noqa: F401  Shared fixture.

DATA_FILE = os.path.join("variables", "variables.data-00000-of-00001")


def good_copy(exported, model_dir, version):
    path = os.path.join(model_dir, str(version))
    shutil.copytree(exported.version_dir, path)
    return path


def half_copy(exported, model_dir, version):
    """As `cp -r` seen midway: saved_model.pb and assets, no variables yet."""
    path = good_copy(exported, model_dir, version)
    shutil.rmtree(os.path.join(path, "variables"))
    return path


def corrupt(path):
    """Flips the variables' bytes: loading fails its checksum."""
    data_path = os.path.join(path, DATA_FILE)
    with open(data_path, "rb") as f:
        data = bytearray(f.read())
    data[: len(data) // 2] = bytes(b ^ 0xFF for b in data[: len(data) // 2])
    with open(data_path, "wb") as f:
        f.write(data)


def stand_in_version(model_dir, version, complete=True, content=b"good"):
    """A version folder with stand-in files; `content` says how it loads."""
    path = os.path.join(model_dir, str(version))
    os.makedirs(os.path.join(path, "variables"), exist_ok=True)
    with open(os.path.join(path, "saved_model.pb"), "wb") as f:
        f.write(content)
    if complete:
        with open(os.path.join(path, "variables", "variables.index"), "wb") as f:
            f.write(b"index")
    return path


def stand_in_load(path):
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        if f.read() != b"good":
            raise ValueError(f"Checksum does not match\nin {path}")
    return path


def test_highest_complete_version_that_loads(tmp_path):
    model_dir = str(tmp_path)
    stand_in_version(model_dir, 1)
    stand_in_version(model_dir, 2, content=b"corrupt")
    stand_in_version(model_dir, 10, complete=False)
    os.makedirs(os.path.join(model_dir, "11"))  # No saved_model.pb: not a version.
    version, loaded, skipped = load_highest_version(model_dir, stand_in_load)
    assert (version, loaded) == (1, os.path.join(model_dir, "1"))
    assert skipped == [
        (10, "no variables/variables.index yet (still being written?)"),
        (2, "ValueError: Checksum does not match"),
    ]
    os.remove(os.path.join(model_dir, "1", "saved_model.pb"))
    with pytest.raises(NoLoadableVersionError, match=r"^No version of .*version 2: "
                       r"ValueError: Checksum does not match\)"):
        load_highest_version(model_dir, stand_in_load)


class StandInServable:
    loads = []

    def __init__(self, name, version, path):
        StandInServable.loads.append(version)
        self.version, self.path = version, stand_in_load(path)


def test_server_polls_wait_retry_and_roll_back(tmp_path, monkeypatch, caplog):
    from serving import model_versions

    monkeypatch.setattr(model_versions, "ServableVersion", StandInServable)
    monkeypatch.setattr(model_versions.ModelVersions, "_warm_up", lambda self, s: 0)
    StandInServable.loads = []
    model_dir = str(tmp_path / "m")
    stand_in_version(model_dir, 1)
    versions = model_versions.ModelVersions(str(tmp_path), "m")
    caplog.set_level(logging.INFO, logger="serving.server")
    assert versions.poll_once(now=0) and versions.current.version == 1

    stand_in_version(model_dir, 2, complete=False)  # A copy under way.
    assert not versions.poll_once(now=1)
    stand_in_version(model_dir, 2)  # Complete now...
    assert not versions.poll_once(now=2)  # ...but changed since the last poll.
    assert versions.poll_once(now=3) and versions.current.version == 2
    assert StandInServable.loads == [1, 2]  # Never tried half-copied.

    stand_in_version(model_dir, 3, content=b"corrupt")
    assert not versions.poll_once(now=4)
    assert not versions.poll_once(now=5)  # Tried: fails, 2 s backoff.
    assert not versions.poll_once(now=6)  # Backing off.
    assert not versions.poll_once(now=7.5)  # Tried again: 4 s backoff.
    assert StandInServable.loads == [1, 2, 3, 3]
    failures = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 2 and "attempt 2; next try in 4 s" in failures[1]
    assert versions.states()[3][1].startswith("load failed: ValueError: Checksum")
    stand_in_version(model_dir, 3)  # Fixed: changed files end the backoff.
    assert not versions.poll_once(now=8)
    assert versions.poll_once(now=9) and versions.current.version == 3

    # The served folder deleted: roll back to the highest that loads, not
    # ignoring a newer complete one.
    stand_in_version(model_dir, 4, content=b"corrupt")
    versions.poll_once(now=10)
    versions.poll_once(now=11)
    shutil.rmtree(os.path.join(model_dir, "3"))
    stand_in_version(model_dir, 5)
    versions.poll_once(now=12)
    assert versions.poll_once(now=13) and versions.current.version == 5
    shutil.rmtree(os.path.join(model_dir, "5"))
    assert versions.poll_once(now=100) and versions.current.version == 2


@pytest.mark.large  # Eight SavedModel loads: about a minute.
def test_predictor_and_batch_command_take_the_highest_version_that_loads(
    exported, tmp_path, caplog, capsys
):
    from serving import predict

    model_dir = str(tmp_path / "cmaclip")
    good_copy(exported, model_dir, 1)
    corrupt(good_copy(exported, model_dir, 2))
    half_copy(exported, model_dir, 3)
    with caplog.at_level(logging.WARNING, logger="cmaclip_tf"):
        predictor = Predictor.load(model_dir)
    assert predictor.source == os.path.join(model_dir, "1")
    (line,) = [r.getMessage() for r in caplog.records]
    assert "version 3 (no variables/variables.index yet" in line
    assert "version 2 (DataLossError" in line and "loaded version 1" in line
    assert "\n" not in line

    manifest = tmp_path / "items.csv"
    manifest.write_text(f"image,text\n{exported.image_files['png']},red\n")
    output = tmp_path / "out.csv"
    assert predict.main(["--model", model_dir, "--manifest", str(manifest),
                         "--output", str(output), "--no-progress"]) == 0

    # None loads: one line, no traceback, exit 1.
    shutil.rmtree(os.path.join(model_dir, "1"))
    with pytest.raises(NoLoadableVersionError) as raised:
        Predictor.load(model_dir)
    assert "\n" not in str(raised.value)
    assert "version 2: DataLossError" in str(raised.value)
    capsys.readouterr()
    assert predict.main(["--model", model_dir, "--manifest", str(manifest),
                         "--output", str(output), "--overwrite", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "No version of" in err
    # A version folder given directly that fails: one line too.
    assert predict.main(["--model", os.path.join(model_dir, "2"), "--manifest",
                         str(manifest), "--output", str(output), "--overwrite",
                         "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"Cannot load {model_dir}") and err.count("\n") == 1


@pytest.mark.large  # Six SavedModel loads and warm-ups: about a minute.
def test_server_waits_for_a_complete_folder_and_retries_failed_versions(
    exported, tmp_path, caplog
):
    from serving.model_versions import ModelVersions

    base = str(tmp_path)
    model_dir = os.path.join(base, exported.model_name)
    good_copy(exported, model_dir, 1)
    versions = ModelVersions(base, exported.model_name)
    caplog.set_level(logging.INFO, logger="serving.server")

    def attempts(version):
        return sum(f"load version {version} " in r.getMessage() for r in caplog.records)

    assert versions.poll_once(now=0) and versions.current.version == 1

    # Half-copied: not loaded, not even tried, until complete and unchanged.
    path = half_copy(exported, model_dir, 2)
    assert version_fingerprint(path) is None
    assert not versions.poll_once(now=1)
    shutil.copytree(os.path.join(exported.version_dir, "variables"),
                    os.path.join(path, "variables"))
    assert not versions.poll_once(now=2)  # Complete, but new since the last poll.
    assert versions.poll_once(now=3) and versions.current.version == 2
    assert attempts(2) == 0  # Loads are logged as "Serving", failures as "load".

    # Corrupt: tried once, then again only after the backoff; version 2 serves.
    path = good_copy(exported, model_dir, 3)
    corrupt(path)
    assert not versions.poll_once(now=4)  # First seen.
    assert not versions.poll_once(now=5)
    assert attempts(3) == 1 and versions.current.version == 2
    assert not versions.poll_once(now=6)  # Backing off: no new attempt.
    assert attempts(3) == 1
    assert not versions.poll_once(now=5 + 2.5)
    assert attempts(3) == 2
    # Fixed in place (the copy completed): loaded once stable, no backoff wait.
    shutil.copy(os.path.join(exported.version_dir, DATA_FILE),
                os.path.join(path, DATA_FILE))
    assert not versions.poll_once(now=8)
    assert versions.poll_once(now=9) and versions.current.version == 3

    # The served version deleted: the highest other one that loads serves.
    shutil.rmtree(path)
    assert versions.poll_once(now=10) and versions.current.version == 2
