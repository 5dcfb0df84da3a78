import lsst.epo.zooniverse.extract_stamps
assert type(config) is lsst.epo.zooniverse.extract_stamps.ExtractStampsConfig, f"config is of type {type(config).__module__}.{type(config).__name__} instead of lsst.epo.zooniverse.extract_stamps.ExtractStampsConfig"

import lsst.pipe.base.config
# Flag to enable/disable saving of log output for a task, enabled by default.
config.saveLogOutput=True

# Stamp width and height in coadd pixels (an odd size puts the object on a pixel centre, within half a pixel of the stamp centre).
config.stamp_size=101

# Stamp width and height in arcseconds; when set, overrides stamp_size (converted with the coadd's pixel scale at the patch centre and rounded to the nearest odd number of pixels).
config.stamp_size_arcsec=None

# Take each object's stamp size from the catalog's cutout_size_pixels or cutout_size_arcsec column when the sharded catalog has one (rows with NaN there use the configured size).
config.do_use_size_column=True

# Largest stamp side in pixels; larger per-object sizes are clipped to it (and logged).
config.max_stamp_size=1024

# Write the variance plane of each stamp.
config.do_write_variance=True

# name for connection targets_patch
config.connections.targets_patch='zooniverse_targets_patch'

# name for connection coadd
config.connections.coadd='deep_coadd'

# name for connection stamps
config.connections.stamps='zooniverse_stamps'

