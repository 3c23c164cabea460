"""A workdir belongs to one run's data: what it holds is resumed only by a
command that reads the same data, with the same tasks and classes.

`WORKDIR/data.json` records the data a run started from: the dataset, the
content hash of every manifest, the flags that pick or change examples, and
the good records per split. A later command in the same workdir must match
it and `label_vocabularies.json`, or it is refused with the difference and
the two ways out (a new `--workdir`, or `--overwrite`).
"""

import hashlib
import json
import os
import shutil

from cmaclip_tf.datasets.label_vocabulary import VOCABULARIES_FILENAME
from trainers.training.run_record import RUN_FILE

DATA_FILE = "data.json"
# Flags that decide which examples a run reads, or change their labels.
DATA_FLAGS = ("dataset", "data_dir", "num_examples", "val_size", "val_fraction",
              "seed", "label_noise", "misleading_title", "irrelevant_image")
MANIFEST_FLAGS = ("manifest", "val_manifest", "test_manifest")


def data_record(args, dataset):
    """What `WORKDIR/data.json` holds for a run of `args` on `dataset`."""
    flags = {flag: getattr(args, flag, None) for flag in DATA_FLAGS}
    if flags["data_dir"]:
        flags["data_dir"] = os.path.abspath(flags["data_dir"])
    manifests = {
        flag: _sha256(getattr(args, flag)) for flag in MANIFEST_FLAGS
        if getattr(args, flag, None)
    }
    return {"flags": flags, "manifests_sha256": manifests,
            "examples": dataset.num_examples}


def check_workdir(workdir, record, vocabularies):
    """Raises `ValueError` if `workdir` holds a run on other data.

    Args:
        workdir: the run's folder (need not exist).
        record: `data_record` of the new command.
        vocabularies: the new command's `LabelVocabularies`.
    """
    difference = _vocabulary_difference(workdir, vocabularies)
    path = os.path.join(workdir, DATA_FILE)
    if difference is None and os.path.isfile(path):
        with open(path) as f:
            difference = _record_difference(json.load(f), record)
    if difference is not None:
        raise ValueError(
            f"{workdir} holds a run on other data ({difference}); pass a new "
            "--workdir, or --overwrite to delete that run and start over."
        )


def write_data_record(workdir, record):
    with open(os.path.join(workdir, DATA_FILE), "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")


def clear_workdir(workdir):
    """Deletes a run's folder (`--overwrite`); refuses any other folder."""
    if not os.path.isdir(workdir) or not os.listdir(workdir):
        return
    if not any(os.path.exists(os.path.join(workdir, name))
               for name in (RUN_FILE, DATA_FILE, VOCABULARIES_FILENAME)):
        raise ValueError(
            f"--overwrite deletes only a run's folder, and {workdir} holds no "
            f"run ({RUN_FILE}); pass another --workdir."
        )
    shutil.rmtree(workdir)


def _vocabulary_difference(workdir, vocabularies):
    path = os.path.join(workdir, VOCABULARIES_FILENAME)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)["tasks"]
    if list(saved) != list(vocabularies):
        return (f"tasks {', '.join(saved)} there, "
                f"{', '.join(vocabularies)} now")
    for task, names in saved.items():
        new = vocabularies[task].names
        if names != new:
            added = [n for n in new if n not in names]
            gone = [n for n in names if n not in new]
            change = "; ".join(part for part in (
                "new: " + ", ".join(added) if added else "",
                "gone: " + ", ".join(gone) if gone else "") if part)
            return (f"{task} classes: {len(names)} there, {len(new)} now"
                    + (f"; {change}" if change else ""))
    return None


def _record_difference(saved, record):
    for flag, value in record["flags"].items():
        if saved.get("flags", {}).get(flag) != value:
            return (f"--{flag.replace('_', '-')} "
                    f"{saved.get('flags', {}).get(flag)} there, {value} now")
    saved_manifests = saved.get("manifests_sha256", {})
    for flag in MANIFEST_FLAGS:
        if saved_manifests.get(flag) != record["manifests_sha256"].get(flag):
            return f"another --{flag.replace('_', '-')} file"
    if saved.get("examples") != record["examples"]:
        return (f"examples per split {saved.get('examples')} there, "
                f"{record['examples']} now")
    return None


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
