"""Installable package for cmaclip-tf: `pip install -e .`."""

import setuptools

setuptools.setup(
    name="cmaclip-tf",
    version="0.1.0",
    description=(
        "CMA-CLIP (Cross-Modality Attention CLIP) for multi-task image-text "
        "classification in TensorFlow/Keras 3."
    ),
    packages=setuptools.find_packages(
        include=["cmaclip_tf", "cmaclip_tf.*", "trainers", "trainers.*", "serving"]
    ),
    package_data={
        "cmaclip_tf": [
            "configs/*.json", "models/*.txt", "preprocessing/assets/*.json",
            # Shipped CLIP presets: keras-hub preset folders.
            "models/presets/*/*", "models/presets/*/assets/*/*",
        ],
        "trainers": ["recipes/*.json"],
    },
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "tensorflow-text>=2.21,<2.22",
        "tensorflow-datasets>=4.9",
        "tensorflow-serving-api>=2.21,<2.22",
        "tensorboard>=2.21,<2.22",
        "keras>=3.15,<3.16",
        "keras-hub==0.32.0",
        "numpy",
        "pillow",
        "h5py",
        "safetensors",
        "grpcio",
        "psutil",
    ],
    extras_require={
        "test": ["pytest"],
        # python -m serving.beam_predict: Beam needs protobuf < 7 and pillow < 13.
        "beam": ["apache-beam>=2.77,<2.78", "google-crc32c", "protobuf>=6.31,<7",
                 "pillow<13"],
        # Only for regenerating the Hugging Face reference fixture.
        "hf-fixture": ["torch==2.13.0", "transformers"],
    },
)
