"""Object detection transfer: detectors built from torchvision parts, as MoCo's detectron2 configs define them."""
