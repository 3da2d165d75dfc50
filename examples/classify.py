"""Classify image files with a pretrained ResNet and print the top-5 labels.

    python examples/classify.py examples/images/*.jpg
    python examples/classify.py photo.png --model resnet50v2 --top 3

This is `resnet-keras classify` (see `resnet-keras classify --help`): the
image loading, preprocessing and decoding live in the package
(`resnet_keras/_images.py`), so the script and the command line print the
same thing. In Python, the same steps are:

    from resnet_keras import ResNet50
    from resnet_keras.resnet import decode_predictions, preprocess_input
    model = ResNet50(weights="imagenet")
    image = keras.utils.load_img("cat.jpg", target_size=(224, 224))
    x = preprocess_input(keras.utils.img_to_array(image)[None])
    print(decode_predictions(model.predict(x), top=5))

The first run downloads the weights (about 100 MB for ResNet50) through
the manifest into keras' cache (~/.keras/models), verifying the hash; later
runs use the cached file.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TF start-up chatter

from resnet_keras import cli


def main(argv=None) -> int:
    return cli.main(["classify", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
