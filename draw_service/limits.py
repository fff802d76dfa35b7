"""How many images one decode may make: the decoder keeps every image's canvas, and with an animation every
step's canvas, so these bound its memory. `draw-service sample` and the HTTP service's widest settings
(`ServeSettings.max_n`, `max_n_score`, `max_n_animate`) both take them from here."""

MAX_IMAGES = 1024  # 1024 colour 32x32 canvases in float32 are 12 MB; the encoder's batch for /score alike
MAX_ANIMATED = 256  # with every step's canvas kept: 256 x 64 steps of 28x28 are 51 MB
