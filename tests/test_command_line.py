"""trainers/run.py as a user meets it: bad arguments and missing data get one
clear line and a non-zero exit, and leave no workdir behind."""

import os

import pytest
from fixtures_data import write_catalogue

from trainers import command_line
from trainers import run as run_cli


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--batch-size", "0"], "--batch-size: must be >= 1; got 0"),
        (["--batch-size", "-4"], "--batch-size: must be >= 1; got -4"),
        (["--epochs", "-1"], "--epochs: must be >= 0; got -1"),
        (["--warmup-epochs", "two"], "--warmup-epochs: must be an integer >= 0"),
        (["--val-fraction", "1.5"], "--val-fraction: must be between 0 and 1"),
        (["--learning-rate", "0"], "--learning-rate: must be > 0"),
        (["--val-size", "-1"], "--val-size: must be >= 0"),
    ],
)
def test_bad_numbers_are_refused_by_the_parser(tmp_path, capsys, flags, message):
    workdir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        run_cli.main([*flags, "--workdir", str(workdir)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not workdir.exists()


def test_missing_data_is_one_line_and_no_workdir(tmp_path, capsys):
    workdir = tmp_path / "run"
    cases = [
        (["--dataset", "food101"], "needs its data folder: pass --data-dir"),
        (["--dataset", "food101", "--data-dir", str(tmp_path / "nowhere")],
         "UPMC Food-101 not found"),
        (["--dataset", "fashion_gen", "--data-dir", str(tmp_path)],
         "fashiongen_256_256_train.h5 and fashiongen_256_256_validation.h5 not found"),
        (["--dataset", "manifest"], "needs a train manifest: pass --manifest"),
        (["--dataset", "manifest", "--manifest", str(tmp_path / "no.csv")],
         "no.csv not found"),
    ]
    for flags, message in cases:
        assert run_cli.main([*flags, "--workdir", str(workdir)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err, err
        assert "Traceback" not in err and len(err.splitlines()) <= 3
        assert not workdir.exists()


def test_a_bad_record_under_the_error_policy_names_its_row(tmp_path, capsys):
    catalogue = write_catalogue(str(tmp_path / "data"))
    workdir = tmp_path / "run"
    code = run_cli.main(["--dataset", "manifest", "--manifest", catalogue["train"],
                         "--on-bad-record", "error", "--workdir", str(workdir)])
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.splitlines()) == 2
    # The first bad row in file order: red_1.jpg, cut short, on line 3.
    assert "train.csv:3: corrupt image" in err.splitlines()[0]
    assert not workdir.exists()


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="--data-dir"):
        run_cli.main(["--dataset", "food101", "--debug",
                      "--workdir", str(tmp_path / "run")])


def test_errors_that_are_not_the_users_keep_their_traceback():
    def broken():
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        command_line.run_reporting_errors(broken)
    assert command_line.run_reporting_errors(lambda: 0) == 0
    assert os.environ.get("TF_CPP_MIN_LOG_LEVEL")  # Set by conftest or quieting.


def test_noise_and_loss_flags_parse_to_data():
    assert command_line.task_rates("0.2") == 0.2
    assert command_line.task_rates("color=0.2,style=0") == {"color": 0.2, "style": 0.0}
    assert command_line.loss_spec("gce") == "gce"
    assert command_line.loss_spec("color=gce,style=sce") == {"color": "gce",
                                                             "style": "sce"}
    assert command_line.loss_spec('{"name": "gce", "q": 0.5}') == {"name": "gce",
                                                                   "q": 0.5}
    parser = run_cli.build_parser()
    args = parser.parse_args(["--misleading-title", "color=0.3",
                              "--irrelevant-image", "0.1", "--label-noise", "0.2"])
    from trainers.training.input_data import synthetic_noise_config

    config = synthetic_noise_config(args)
    assert config.misleading_title_rate("color") == 0.3
    assert config.misleading_title_rate("style") == 0.0
    assert [config.irrelevant_image_rate(t) for t in ("color", "pattern", "style")
            ] == [0.1, 0.1, 0.1]


def test_generator_dials_on_other_datasets_are_refused(tmp_path, capsys):
    catalogue = write_catalogue(str(tmp_path / "data"))
    assert run_cli.main(["--dataset", "manifest", "--manifest", catalogue["train"],
                         "--misleading-title", "0.2",
                         "--workdir", str(tmp_path / "run")]) == 2
    assert "apply to --dataset synthetic only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_cli.main(["--label-noise", "1.5"])


def test_empty_inputs_name_the_file_and_leave_no_workdir(tmp_path, capsys):
    catalogue = write_catalogue(str(tmp_path / "data"))
    header_only = tmp_path / "data" / "header_only.csv"
    header_only.write_text("image,text,color,shape\n")
    # Every image in another folder than the manifest says.
    moved = tmp_path / "data" / "moved.csv"
    with open(catalogue["train"]) as f:
        moved.write_text(f.read().replace("images/", "pictures/"))
    workdir = tmp_path / "run"
    cases = [
        (["--manifest", str(header_only)],
         f"error: Manifest {header_only} has no data rows (a header only?)"),
        (["--manifest", catalogue["train"], "--val-manifest", str(header_only)],
         f"error: Manifest {header_only} has no data rows"),
        (["--manifest", str(moved), "--val-manifest", catalogue["val"]],
         f"error: No usable train example in {moved}: all 37 rows are bad "
         f"records (missing_image 37; the first: {moved}:2: missing image: "),
    ]
    for flags, message in cases:
        assert run_cli.main(["--dataset", "manifest", *flags,
                             "--workdir", str(workdir)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(message), err
        assert len(err.splitlines()) == 2 and "Traceback" not in err
        assert not workdir.exists()
