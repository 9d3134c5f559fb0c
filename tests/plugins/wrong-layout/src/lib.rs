//! A plugin with a compatible version number (0.1.x) whose root module has another layout:
//! `open` takes an extra argument. The host must refuse it with a layout error instead of
//! calling a function with the wrong signature.

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    prefix_type::PrefixTypeTrait,
    sabi_types::VersionStrings,
    std_types::{RResult, RStr},
    StableAbi,
};
use acdlink_connector_api::{ConnectorBox, ConnectorError, Manifest};

/// The root module with a changed `open` signature.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = ConnectorModuleRef)))]
pub struct ConnectorModule {
    pub manifest: extern "C" fn() -> RResult<Manifest, ConnectorError>,
    #[sabi(last_prefix_field)]
    pub open: extern "C" fn(
        settings_json: RStr<'_>,
        context_json: RStr<'_>,
        flags: u64,
    ) -> RResult<ConnectorBox, ConnectorError>,
}

impl RootModule for ConnectorModuleRef {
    declare_root_module_statics! {ConnectorModuleRef}
    const BASE_NAME: &'static str = "acdlink_connector";
    const NAME: &'static str = "acdlink connector";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new("0.2.0");
}

extern "C" fn manifest() -> RResult<Manifest, ConnectorError> {
    RResult::RErr(ConnectorError::internal("a host must not get this far"))
}

extern "C" fn open(
    _settings_json: RStr<'_>,
    _context_json: RStr<'_>,
    _flags: u64,
) -> RResult<ConnectorBox, ConnectorError> {
    RResult::RErr(ConnectorError::internal("a host must not get this far"))
}

/// The root module of this fixture.
#[abi_stable::export_root_module]
pub fn root_module() -> ConnectorModuleRef {
    ConnectorModule { manifest, open }.leak_into_prefix()
}
