//! The CSV connector as a plugin library: the one-line shim, like the demo plugin.

acdlink_connector_api::export_connector!(acdlink_connector_csv::CsvConnector);

/// Records are many small allocations that the host frees through the FFI types' own
/// vtables, so the library may choose its allocator: mimalloc, as in the demo plugin.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
