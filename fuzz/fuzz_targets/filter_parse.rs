//! Fuzz the filter-expression parser.
//!
//! For any UTF-8 input, `parse::<Filter>()` must not panic. On success, the
//! printed filter must parse back to an equal filter, and `validate()` must
//! not panic. On failure, the error message must be a single line.

#![no_main]

use libfuzzer_sys::fuzz_target;
use quiver::Filter;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.parse::<Filter>() {
        Ok(filter) => {
            let printed = filter.to_string();
            match printed.parse::<Filter>() {
                Ok(back) => assert_eq!(
                    back, filter,
                    "round trip changed the filter\n input: {text:?}\n printed: {printed:?}"
                ),
                Err(e) => panic!(
                    "printed filter does not parse: {e}\n input: {text:?}\n printed: {printed:?}"
                ),
            }
            // Must not panic; Ok or Err are both acceptable.
            let _ = filter.validate();
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                !msg.contains(['\n', '\r']),
                "error message spans several lines\n input: {text:?}\n message: {msg:?}"
            );
        }
    }
});
