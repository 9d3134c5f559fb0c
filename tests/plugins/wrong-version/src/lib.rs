//! A plugin that says it was built against connector-api 1.0.0: the host (0.1) must refuse
//! it with a version error before touching anything else in it.

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    prefix_type::PrefixTypeTrait,
    sabi_types::VersionStrings,
    std_types::{RResult, RStr},
    StableAbi,
};
use acdlink_connector_api::{ConnectorBox, ConnectorError, Manifest};

/// The root module as a future connector-api might declare it.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = FutureModuleRef)))]
pub struct FutureModule {
    pub manifest: extern "C" fn() -> RResult<Manifest, ConnectorError>,
    #[sabi(last_prefix_field)]
    pub open: extern "C" fn(
        settings_json: RStr<'_>,
        context_json: RStr<'_>,
    ) -> RResult<ConnectorBox, ConnectorError>,
}

impl RootModule for FutureModuleRef {
    declare_root_module_statics! {FutureModuleRef}
    const BASE_NAME: &'static str = "acdlink_connector";
    const NAME: &'static str = "acdlink connector";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new("1.0.0");
}

extern "C" fn manifest() -> RResult<Manifest, ConnectorError> {
    RResult::RErr(ConnectorError::internal("a host must not get this far"))
}

extern "C" fn open(
    _settings_json: RStr<'_>,
    _context_json: RStr<'_>,
) -> RResult<ConnectorBox, ConnectorError> {
    RResult::RErr(ConnectorError::internal("a host must not get this far"))
}

/// The root module of this fixture.
#[abi_stable::export_root_module]
pub fn root_module() -> FutureModuleRef {
    FutureModule { manifest, open }.leak_into_prefix()
}
