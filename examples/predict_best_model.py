"""Load the search's best_model.keras and classify test images.

    python examples/predict_best_model.py runs/search/best_model.keras

The attention layers are registered Keras serializables: importing keras_attn is all that loading
needs (no custom_objects, safe_mode stays on).
"""

import sys

import keras
import numpy as np

import keras_attn  # noqa: F401  (registers the layers for deserialization)
from search.data import load_dataset

path = sys.argv[1] if len(sys.argv) > 1 else "runs/search/best_model.keras"
model = keras.models.load_model(path)
height, width, channels = model.input_shape[1:]
data = load_dataset("fashion_mnist", image_size=height, channels=channels, batch_size=16)
images, labels = next(iter(data.test))
probs = model.predict(images, verbose=0)
for p, y in zip(probs, labels.numpy()):
    guess = int(np.argmax(p))
    print(f"predicted {data.class_names[guess]:<12} ({p[guess]:.2f})  true {data.class_names[y]}")
keras_attn.print_attention_summary(model)
