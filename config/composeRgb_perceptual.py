# composeRgb overrides: the perceptual (PrettyPicture-like) mode on Rubin
# deep coadds (nJy): Oklab luminance compression and moderate chroma.
# Use: pipetask ... -C composeRgb:config/composeRgb_perceptual.py
config.stretch.algorithm = "perceptual"
config.stretch.maximum = [2000.0]
config.stretch.luminance_stretch = 60.0
config.stretch.max_luminance = 0.95
config.stretch.saturation = 0.8
