//! The demo connector as a plugin library: the whole of what a vendor's cdylib crate needs.

acdlink_connector_api::export_connector!(acdlink_connector_demo::DemoConnector);

/// Records are many small allocations (identifiers, names, extras) that the host frees
/// through the FFI types' own vtables, so the library may choose its allocator: mimalloc
/// handles this churn far better than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
