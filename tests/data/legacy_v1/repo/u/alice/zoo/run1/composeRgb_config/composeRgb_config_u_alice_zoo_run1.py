import lsst.epo.zooniverse.compose_rgb
assert type(config) is lsst.epo.zooniverse.compose_rgb.ComposeRgbConfig, f"config is of type {type(config).__module__}.{type(config).__name__} instead of lsst.epo.zooniverse.compose_rgb.ComposeRgbConfig"

import lsst.epo.zooniverse.rgb_stretch
import lsst.pipe.base.config
# Flag to enable/disable saving of log output for a task, enabled by default.
config.saveLogOutput=True

config.channels={}
config.channels['i']=lsst.epo.zooniverse.compose_rgb.ChannelConfig()
# Weight of this band in the red channel.
config.channels['i'].red=1.0

# Weight of this band in the green channel.
config.channels['i'].green=0.0

# Weight of this band in the blue channel.
config.channels['i'].blue=0.0

# Value subtracted from this band before mixing (e.g. a sky pedestal), in the coadd's units.
config.channels['i'].background=0.0

config.channels['r']=lsst.epo.zooniverse.compose_rgb.ChannelConfig()
# Weight of this band in the red channel.
config.channels['r'].red=0.0

# Weight of this band in the green channel.
config.channels['r'].green=1.0

# Weight of this band in the blue channel.
config.channels['r'].blue=0.0

# Value subtracted from this band before mixing (e.g. a sky pedestal), in the coadd's units.
config.channels['r'].background=0.0

config.channels['g']=lsst.epo.zooniverse.compose_rgb.ChannelConfig()
# Weight of this band in the red channel.
config.channels['g'].red=0.0

# Weight of this band in the green channel.
config.channels['g'].green=0.0

# Weight of this band in the blue channel.
config.channels['g'].blue=1.0

# Value subtracted from this band before mixing (e.g. a sky pedestal), in the coadd's units.
config.channels['g'].background=0.0

# Stretch algorithm.
config.stretch.algorithm='lupton'

# Lupton asinh softening parameter (astropy's name; must be > 0). Larger values compress bright regions more.
config.stretch.Q=8.0

# Lupton linear stretch (afw's dataRange): the intensity above minimum over which the mapping is roughly linear, in image units (must be > 0).
config.stretch.stretch=400.0

# Black level in image units: one value for all bands or three in R, G, B order (lupton, asinh, linear).
config.stretch.minimum=[0.0]

# White level in image units: one value for all bands or three in R, G, B order (asinh and linear: must exceed minimum; perceptual: must be > 0).
config.stretch.maximum=[1.0]

# Softening 'a' of the asinh algorithm, as a fraction of maximum - minimum (must be > 0); the curve is linear well below it and logarithmic above.
config.stretch.softening=0.1

# Perceptual: asinh stretch of Oklab lightness (must be > 0).
config.stretch.luminance_stretch=400.0

# Perceptual: highest output Oklab lightness, in (0, 1].
config.stretch.max_luminance=0.85

# Perceptual: midtone balance in (0, 1); 0.5 is neutral, smaller brightens mid-tones.
config.stretch.midtone=0.5

# Perceptual: chroma gain (>= 0; 0 gives grey).
config.stretch.saturation=0.6

# Perceptual: largest output Oklab chroma (must be > 0).
config.stretch.max_chroma=0.4

# Perceptual: linear level, as a fraction of maximum, mapped to the very dark grey Oklab L = 0.2 (21 DN); fainter light goes to black. In [0, 1). With 0, black itself is that grey and sky noise becomes bright grey; set it near sky noise / maximum for a black sky.
config.stretch.floor=0.0

# Where the black and white levels come from.
config.stretch.scaling='global'

# Low and high percentiles (0 <= low < high <= 100) used when scaling='per_image'.
config.stretch.per_image_percentiles=[1.0, 99.5]

# What to do when a colour channel has no coadd for the patch.
config.missing_band_policy='skip'

# Smallest fraction of stamp pixels with data (in every band used) for a picture to be made.
config.min_coverage=0.5

# Side of the output pictures in pixels (square stamps are resampled with Lanczos); 0 keeps the stamp size.
config.output_size=0

# Orientation of the pictures.
config.orientation='north_up'

# What metadata each PNG carries (the ZIP's index.csv always has everything).
config.metadata_policy='full'

# Mask planes whose pixels are shown black (their values are set to zero).
config.bad_mask_planes=['NO_DATA']

# Also make one grey 8-bit frame per band used (in band order) for every picture, for multi-frame (flipbook) subjects that show the RGB picture then each band.  A frame is its band alone (background subtracted, bad pixels zeroed) stretched like the RGB picture: the same algorithm and the same levels (with scaling='per_image', those measured on the picture's channels), the band's image given as all three channels with the black/white level of the channel the band weighs most in, reduced to grey (for lupton the Lupton stretch of the band's own intensity: in the linear part of the stretch a source seen only in this band has the same value in its frame as in its RGB channel; for asinh and linear a band alone in its channel gives exactly that channel).  Frames are oriented and resized exactly like the picture, so their pixels line up with it and share its WCS.  Band names must match [A-Za-z0-9_-]{1,16}.
config.band_frames=False

# name for connection stamps
config.connections.stamps='zooniverse_stamps'

# name for connection targets_patch
config.connections.targets_patch='zooniverse_targets_patch'

# name for connection rgb
config.connections.rgb='zooniverse_rgb'

# name for connection rgb_report
config.connections.rgb_report='zooniverse_rgb_report'

