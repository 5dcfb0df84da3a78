# composeRgb overrides for multi-frame (flipbook) Zooniverse subjects: each
# picture also gets one grey frame per band used (g, r, i with the default
# channels), stretched like the RGB picture and aligned with it pixel for
# pixel; the zooniverse_rgb ZIP lists them in the frames column of its
# index.csv, and a subject shows the RGB picture first, then each band.
# Combine with another override file for the stretch if needed.
# Use: pipetask ... -C composeRgb:config/composeRgb_flipbook.py
config.band_frames = True
