# composeRgb overrides for the demo repository, which holds two kinds of
# coadd: synthetic Rubin-like g/r/i in nJy (tracts 0 and 2) and the real
# 2MASS J/H/K images in DN (tract 1).  One pipeline run handles both: a
# colour channel is the mean of weight x band over the bands of the patch
# that feed it, so the g/r/i patches use g/r/i and the 2MASS patch uses
# J/H/K.  A weight is a gain: the 2MASS weights (1.3) scale DN onto the
# nJy stretch, after removing each band's sky pedestal.
# Use: pipetask ... -C composeRgb:config/composeRgb_demo.py
from lsst.epo.zooniverse.pipeline.compose_rgb import ChannelConfig

# The black level follows each patch's sky (the default
# black_point="sky"), so the 2MASS pedestals need not be exact.
config.channels["K"] = ChannelConfig(red=1.3, background=530.0)
config.channels["H"] = ChannelConfig(green=1.3, background=500.0)
config.channels["J"] = ChannelConfig(blue=1.3, background=154.0)
