"""Classify image files with a pretrained ResNet and print the top-5 labels.

    python examples/classify.py examples/images/*.jpg
    python examples/classify.py photo.png --model resnet50v2 --top 3

The first run downloads the weights (about 100 MB for ResNet50) through
the manifest into keras' cache (~/.keras/models), verifying the hash; later
runs use the cached file.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TF start-up chatter

import keras
import numpy as np

from resnet_keras import resnet, resnet_v2

MODELS = {
    "resnet50": (resnet.ResNet50, resnet),
    "resnet101": (resnet.ResNet101, resnet),
    "resnet152": (resnet.ResNet152, resnet),
    "resnet50v2": (resnet_v2.ResNet50V2, resnet_v2),
    "resnet101v2": (resnet_v2.ResNet101V2, resnet_v2),
    "resnet152v2": (resnet_v2.ResNet152V2, resnet_v2),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    parser.add_argument("--model", default="resnet50", choices=sorted(MODELS))
    parser.add_argument("--weights", default="imagenet", help="tag or .h5 path")
    parser.add_argument("--top", type=int, default=5)
    args = parser.parse_args(argv)

    builder, module = MODELS[args.model]
    model = builder(weights=args.weights)
    size = model.input_shape[1:3]
    batch = np.stack(
        [keras.utils.img_to_array(keras.utils.load_img(p, target_size=size)) for p in args.images]
    )
    scores = model.predict(module.preprocess_input(batch), verbose=0)
    for path, top in zip(args.images, module.decode_predictions(scores, top=args.top)):
        print(path)
        for rank, (_, label, score) in enumerate(top, start=1):
            print(f"  {rank}. {label:<24} {score:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
