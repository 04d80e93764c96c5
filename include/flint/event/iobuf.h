#pragma once
// The "iobuf" subsystem: initialises the shared buffer pools (flint/thread/iobuf.h) before
// the subsystems that use them, and adds the iobuf_set_options (startup) and
// iobuf_get_stats (runtime) methods.

namespace flint::event {

// Adds the subsystem and its methods; later calls do nothing. Call before app_start();
// subsystems that take buffers list "iobuf" in depends_on (bdev registers it itself).
void register_iobuf_subsystem();

}  // namespace flint::event
