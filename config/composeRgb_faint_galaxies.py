# composeRgb overrides for faint, extended galaxies on Rubin deep coadds
# (nJy): a lower linear range and softer compression bring up low surface
# brightness features; bright stars saturate to white cores.
# Use: pipetask ... -C composeRgb:config/composeRgb_faint_galaxies.py
config.stretch.algorithm = "lupton"
config.stretch.Q = 10.0
config.stretch.stretch = 150.0
# The black level follows the sky (the default black_point="sky"), 2.5
# noise sigmas below it so that faint outskirts stay above black; -10 nJy
# is used only where the sky cannot be measured (set
# config.stretch.black_point = "fixed" to use it everywhere).
config.stretch.sky_sigma_below = 2.5
config.stretch.minimum = [-10.0]
