"""Transfer to object detection, instance segmentation and keypoints: the datasets in their released
layouts, the detectors of MoCo's detectron2 configs built from torchvision parts, and the evaluators
of the published numbers (VOC as detectron2 computes it, COCO with pycocotools)."""
