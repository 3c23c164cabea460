"""Builds this project's TFDS datasets from their manual downloads.

    python -m cmaclip_tf.datasets.tfds upmc_food101/val20 \
        --manual_dir DIR --data_dir TFDS_DIR

The same as `tfds build --imports cmaclip_tf.datasets.tfds NAME --manual_dir
DIR --data_dir TFDS_DIR`, which needs `apache-beam` installed just to start
(tensorflow-datasets 4.9.10 imports it in the CLI); this does not.
"""

import argparse

import tensorflow_datasets as tfds

from cmaclip_tf.datasets.tfds import BUILDERS


def build_dataset(name, manual_dir, data_dir=None):
    """Builds `name` (`upmc_food101`, `fashion_gen/val20`, ...); returns it.

    Raises:
        ValueError: for a name this project does not build.
        FileNotFoundError: naming the files missing from `manual_dir`.
    """
    builder_name, _, config = name.partition("/")
    if builder_name not in BUILDERS:
        raise ValueError(
            f"Unknown dataset {name!r}; this project builds {sorted(BUILDERS)}."
        )
    builder = BUILDERS[builder_name](config=config or None, data_dir=data_dir)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
    )
    return builder


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("name", help="upmc_food101 or fashion_gen, [/val20]")
    parser.add_argument("--manual_dir", required=True)
    parser.add_argument("--data_dir", default=None)
    args = parser.parse_args(argv)
    builder = build_dataset(args.name, args.manual_dir, args.data_dir)
    for split, info in builder.info.splits.items():
        print(f"{split}: {info.num_examples} examples")
    skipped = builder.info.metadata.get("bad_records", {})
    for split, records in skipped.items():
        if records:
            print(f"{split}: skipped {len(records)} bad records")
    print(f"Built {args.name} in {builder.data_dir}")


if __name__ == "__main__":
    main()
