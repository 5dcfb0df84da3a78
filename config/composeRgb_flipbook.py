# composeRgb overrides for multi-frame (flipbook) Zooniverse subjects: each
# picture also gets one grey frame per band used (with the default channels
# g, i, r: frames come in alphabetical band order, not by wavelength),
# stretched like the RGB picture and aligned with it pixel for pixel; the
# zooniverse_rgb ZIP lists them in the frames column of its index.csv, and
# a subject shows the RGB picture first, then each band in that order.
# Combine with another override file for the stretch if needed.
# Use: pipetask ... -C composeRgb:config/composeRgb_flipbook.py
config.band_frames = True
