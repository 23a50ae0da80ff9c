"""Deployment: ONNX and OpenVINO export checked against PyTorch, inference backends, ``.bin`` folders,
streaming runners, the accuracy report and the reference's whole pipeline."""
