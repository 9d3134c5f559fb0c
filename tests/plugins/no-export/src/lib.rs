//! A shared library that is not an acdlink plugin: it exports no root module.

/// Something a library might export.
#[no_mangle]
pub extern "C" fn acdlink_fixture_answer() -> u32 {
    42
}
