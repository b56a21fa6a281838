from setuptools import find_packages, setup

setup(
    name="detection",
    version="0.1.0",
    description="Faster R-CNN with a ResNet C4 backbone, in the shape of the ResNet paper's detection system",
    packages=find_packages(include=["detection", "detection.*"]),
    python_requires=">=3.9",
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "numpy",
        "pycocotools>=2.0.7",
        "albumentations>=2.0",
        # The headless build: albumentations depends on it, and a second (GUI) OpenCV wheel
        # installed beside it would shadow the same cv2 module.
        "opencv-python-headless>=4.8",
        "pyyaml>=5.4",
        "tqdm",
        "matplotlib",
    ],
    extras_require={
        "test": ["pytest>=7", "pytest-timeout"],
        "tensorboard": ["tensorboard"],
        # tools/export.py --format onnx and its parity check in onnxruntime (TorchScript needs nothing more)
        "export": ["onnx", "onnxruntime"],
        # tools/benchmark.py's OpenVINO rows: the ONNX export compiled by OpenVINO for the CPU
        "openvino": ["onnx", "openvino"],
        # tools/quantize.py and TEST.INT8: PyTorch 2 export quantization for x86 CPUs
        "int8": ["torchao"],
    },
)
