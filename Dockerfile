# hardneg-bench on a GPU box: the official PyTorch CUDA runtime image with the package installed.
#   docker build -t hardneg-bench .
#   docker run --gpus all --shm-size 8g -v /data:/data -v $PWD/runs:/runs -v $PWD/results:/work/results \
#       hardneg-bench run --method ring --dataset cifar10
# The base image's torch and torchvision satisfy the package's version ranges, so pip keeps them.
ARG BASE_IMAGE=pytorch/pytorch:2.9.0-cuda12.8-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    HARDNEG_BENCH_DATA=/data \
    HARDNEG_BENCH_RUNS=/runs

WORKDIR /opt/hardneg-bench
COPY pyproject.toml README.md ./
COPY hardneg_bench ./hardneg_bench
COPY experiments ./experiments
# the detection extra: pycocotools for COCO's box, mask and keypoint AP
RUN pip install './[detection]' && hardneg-bench list methods > /dev/null

# datasets (read, and written by torchvision downloads), the run store, and where report writes
VOLUME ["/data", "/runs"]
WORKDIR /work
ENTRYPOINT ["hardneg-bench"]
CMD ["--help"]
