#![no_main]

use libfuzzer_sys::fuzz_target;
use wattlet_meter_parser::Protocol;

fuzz_target!(|data: &[u8]| wattlet_meter_parser_fuzz::check(Protocol::Iec62056_21, data));
