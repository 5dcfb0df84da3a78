# composeRgb overrides for the 2MASS J/H/K images of the demo repository
# (tract 1): K red, H green, J blue, each band's sky pedestal (in DN)
# removed before mixing.  2MASS images are in DN, not nJy; the weights put
# them on a scale where the default Lupton stretch shows them well.
# Use: pipetask ... -C composeRgb:config/composeRgb_2mass.py
from lsst.epo.zooniverse.pipeline.compose_rgb import ChannelConfig

config.channels = {
    "K": ChannelConfig(red=1.0, background=530.0),
    "H": ChannelConfig(green=1.0, background=500.0),
    "J": ChannelConfig(blue=1.0, background=154.0),
}
# The black level follows the sky that is left after the pedestals (the
# default black_point="sky": 2 noise sigmas below a robust sky level).
config.stretch.stretch = 300.0
config.stretch.Q = 8.0
