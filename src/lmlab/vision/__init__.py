"""The vision lab: image data as tensors, models (MLP, CNN, ResNet, ViT), batched
augmentation, the LR range test, parameters and FLOPs, and what the report shows of a trained
classifier. ``lmlab vision`` (stages/vision.py) wires them to the shared loop.

Nothing here is imported at ``import lmlab.vision`` (the CLI lists stages without torch).
"""

# the architectures ``build_model`` knows (lmlab.vision.models)
MODELS = ("mlp", "cnn", "resnet8", "resnet20", "resnet18", "resnet50", "vit",
          "efficientnet-lite0")
