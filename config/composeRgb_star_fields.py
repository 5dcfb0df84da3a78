# composeRgb overrides for crowded star fields on Rubin deep coadds (nJy):
# a wide linear range keeps the colours of bright stars instead of
# burning them out, at the cost of faint galaxies.
# Use: pipetask ... -C composeRgb:config/composeRgb_star_fields.py
config.stretch.algorithm = "lupton"
config.stretch.Q = 6.0
config.stretch.stretch = 3000.0
# The black level follows the sky (default black_point="sky"); 0 is used
# only where the sky cannot be measured.
config.stretch.minimum = [0.0]
