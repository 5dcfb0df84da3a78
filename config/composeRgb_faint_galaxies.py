# composeRgb overrides for faint, extended galaxies on Rubin deep coadds
# (nJy): a lower linear range and softer compression bring up low surface
# brightness features; bright stars saturate to white cores.
# Use: pipetask ... -C composeRgb:config/composeRgb_faint_galaxies.py
config.stretch.algorithm = "lupton"
config.stretch.Q = 10.0
config.stretch.stretch = 150.0
config.stretch.minimum = [-10.0]
