"""Object detection transfer: datasets, models and evaluation on PASCAL VOC and COCO."""
