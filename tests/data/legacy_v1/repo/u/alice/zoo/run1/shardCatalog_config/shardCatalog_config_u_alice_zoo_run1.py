import lsst.epo.zooniverse.shard_catalog
assert type(config) is lsst.epo.zooniverse.shard_catalog.ShardCatalogConfig, f"config is of type {type(config).__module__}.{type(config).__name__} instead of lsst.epo.zooniverse.shard_catalog.ShardCatalogConfig"

import lsst.pipe.base.config
# Flag to enable/disable saving of log output for a task, enabled by default.
config.saveLogOutput=True

# Keep only rows inside the patch's sky region (the registry's polygon); if False, keep rows whose tract pixel position falls in the patch's outer box.
config.do_check_region=True

# name for connection targets
config.connections.targets='zooniverse_targets'

# name for connection sky_map
config.connections.sky_map='zooniverse_skymap'

# name for connection targets_patch
config.connections.targets_patch='zooniverse_targets_patch'

