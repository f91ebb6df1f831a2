"""Object-detection transfer (PASCAL VOC, COCO)."""
