from setuptools import setup

CORE = [
    "numpy>=1.24,<3",
    "torch>=2.4,<3",
    "torchvision>=0.19,<1",
    "scikit-image>=0.21,<1",
    "lpips>=0.1.4,<0.2",
    "tqdm>=4.60,<5",
    "matplotlib>=3.7,<4",
    "PyYAML>=6,<7",
    "opencv-python-headless>=4.8,<5",
    "imageio>=2.30,<3",
]
EXPORT = [
    "onnx>=1.16,<2",
    "onnxscript>=0.2,<1",
    "onnxruntime>=1.18,<2",
    "onnxconverter-common>=1.14,<2",
]
RUNTIME = ["numpy>=1.24,<3", "onnxruntime>=1.18,<2", "opencv-python-headless>=4.8,<5"]

setup(
    name="mspn",
    version="0.1.0",
    description="MSPN video prediction: training, ONNX export, torch-free edge runtime, benchmarks",
    python_requires=">=3.10",
    packages=["mspn", "mspn.models", "mspn.data", "mspn.train", "mspn.bench", "mspn.export", "mspn.runtime"],
    package_dir={"mspn": "mspn", "mspn.export": "export", "mspn.runtime": "runtime"},
    package_data={"mspn.export": ["data/*.txt"], "mspn.data": ["assets/*"]},
    # The bare install is what an edge device needs to import mspn.runtime; training and
    # export pull torch in through their extras so an edge install never downloads it.
    install_requires=["numpy>=1.24,<3"],
    extras_require={
        "train": CORE,
        "export": CORE + EXPORT,
        "runtime": RUNTIME,
        "openvino": ["numpy>=1.24,<3", "openvino>=2024.0,<2030"],
        "gpu": ["numpy>=1.24,<3", "onnxruntime-gpu>=1.18,<2", "tensorrt>=10.0,<12", "cuda-python>=12",
                "onnx>=1.16,<2"],  # build-engine folds int8 bias DequantizeLinear for TensorRT,
        "all": CORE + EXPORT + RUNTIME + ["openvino>=2024.0,<2030"],
        "dev": ["pytest>=7,<10", "openvino>=2024.0,<2030", "psutil>=5.9,<8"],
    },
    entry_points={"console_scripts": ["mspn=mspn.cli:main"]},
)
