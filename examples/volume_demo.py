"""A small 3-D model and a volume to try gradcam on volumes: writes demo_3d.keras (an untrained Conv3D
classifier, seeded) and volumes/ball.npy (a bright ball in a noisy 48 x 64 x 64 volume) here. Then:

    gradcam volumes/ --model demo_3d.keras -o gradcam_output/volumes
"""
import os

import keras
import numpy as np

keras.utils.set_random_seed(0)
inputs = keras.Input((32, 32, 32, 1))
x = keras.layers.Conv3D(8, 3, padding="same", activation="relu")(inputs)
x = keras.layers.Conv3D(8, 3, padding="same", activation="relu", name="features")(x)
x = keras.layers.GlobalMaxPooling3D()(x)
keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x)).save("demo_3d.keras")
z, y, x = np.mgrid[:48, :64, :64]
os.makedirs("volumes", exist_ok=True)  # a bright ball in a noisy 48 x 64 x 64 volume
ball = ((z - 30) ** 2 + (y - 20) ** 2 + (x - 40) ** 2 < 100) * 200.0
np.save("volumes/ball.npy", (ball + np.random.default_rng(0).uniform(0, 50, ball.shape)).astype(np.float32))
