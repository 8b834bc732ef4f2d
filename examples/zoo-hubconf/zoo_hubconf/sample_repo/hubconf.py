"""A sample torch.hub repo: one tiny image classifier, quick to build and export.

Point the hubconf source at your own repo the same way: ``zoo pull hubconf:/path/to/repo:fn``.
"""

dependencies = ["torch"]

# Optional, read by zoo's hubconf source: how inputs are prepared, and the class names.
ZOO_METADATA = {
    "tiny_cnn": {
        "input_size": [3, 32, 32],
        "resize": 36,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "labels": ["circle", "square", "triangle"],
    }
}


def tiny_cnn(pretrained: bool = False, num_classes: int = 3):
    """A two-layer CNN for 32x32 RGB images. There are no published weights for it."""
    import torch
    from torch import nn

    if pretrained:
        raise RuntimeError("tiny_cnn has no pretrained weights: use --weights none or --weights PATH")
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes),
    )
