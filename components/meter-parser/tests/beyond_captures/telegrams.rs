//! The telegrams: built to the documented shapes of meters and gateways that are not in our
//! captures, with our own values.

use crate::support::{dsmr, framed, lines, mode_c};
use crc::{CRC_16_ARC, Crc};

const ARC: Crc<u16> = Crc::<u16>::new(&CRC_16_ARC);

// ---------------------------------------------------------------------------------------------
// The telegrams
// ---------------------------------------------------------------------------------------------

/// ISKRA MT174 data message: full OBIS codes with `*255`, maximum demand as value then time
/// (`YYMMDDhhmm`), the meter's clock in 0.9.1/0.9.2.
pub fn mt174_data() -> String {
    lines(&[
        "0-0:C.1.0*255(09610)",
        "1-0:0.9.1*255(093012)",
        "1-0:0.9.2*255(0231204)",
        "1-0:1.8.0*255(0012345.678*kWh)",
        "1-0:1.8.1*255(0010000.000*kWh)",
        "1-0:1.8.2*255(0002345.678*kWh)",
        "1-0:2.8.0*255(0000123.456*kWh)",
        "1-0:1.6.0*255(02.468*kW)(2312010930)",
        "1-0:1.6.1*255(02.468*kW)(2312010930)",
        "1-0:1.6.2*255(01.357*kW)(2311271845)",
        "1-0:2.6.0*255(00.912*kW)(2307141300)",
        "0-0:F.F*255(00000000)",
    ])
}

pub fn mt174() -> Vec<u8> {
    mode_c("ISk5MT174-0001", &mt174_data())
}

/// The probe's sign-on, the meter's identification, the probe's option select (ACK 0 5 0: normal
/// protocol, 9600 Bd, data readout) as the optical head reads it back, then the data message.
pub fn mt174_session() -> Vec<u8> {
    let mut out = b"/?!\r\n/ISk5MT174-0001\r\n\x06050\r\n".to_vec();
    out.extend(framed(&mt174_data()));
    out
}

/// Landis+Gyr Ultraheat shape: reduced heat-meter codes, several per line, `F(0)`, `&` lists.
pub fn ultraheat_data() -> String {
    lines(&[
        "6.8(0321.456*GJ)6.26(07123.45*m3)9.21(00012345)",
        "6.26*01(07001.00*m3)6.8*01(0318.000*GJ)",
        "F(0)9.20(66912345)6.35(60*m)",
        "6.6(0025.0*kW)6.33(000.800*m3ph)9.4(105.0*C&085.5*C)",
        "6.31(0087000*h)9.22(R)9.36(2023-12-04&10:06:51)",
        "0.0(00012345)",
    ])
}

pub fn ultraheat() -> Vec<u8> {
    mode_c("LUGCUH50", &ultraheat_data())
}

/// What a D0 gateway answers: the readout's data lines only (blank lines first, LF line ends).
pub fn gateway_data_lines() -> Vec<u8> {
    let mut out = b"\n\n".to_vec();
    out.extend(ultraheat_data().replace("\r\n", "\n").bytes());
    out.extend(b"!\n");
    out
}

/// A gateway that forwards the data message only (STX … ETX BCC), without identification.
pub fn gateway_data_message() -> Vec<u8> {
    framed(&mt174_data())
}

/// A gateway that lost the identification's `/` and sends the rest of the readout.
pub fn gateway_partial_header() -> Vec<u8> {
    let mut out = b"ISk5MT174-0001\r\n".to_vec();
    out.extend(framed(&mt174_data()));
    out
}

/// DSMR 2.2: no CRC, gas as a profile whose value comes alone on the next line.
pub fn dsmr22() -> Vec<u8> {
    let data = lines(&[
        "/ISk5\\2MT382-1004",
        "",
        "0-0:96.1.1(00000000000000)",
        "1-0:1.8.1(01234.567*kWh)",
        "1-0:1.8.2(02345.678*kWh)",
        "1-0:2.8.1(00012.345*kWh)",
        "1-0:2.8.2(00023.456*kWh)",
        "0-0:96.14.0(0001)",
        "1-0:1.7.0(0001.23*kW)",
        "1-0:2.7.0(0000.00*kW)",
        "0-0:17.0.0(0999.00*kW)",
        "0-0:96.3.10(1)",
        "0-0:96.13.1()",
        "0-0:96.13.0()",
        "0-1:24.1.0(3)",
        "0-1:96.1.0(000000000000)",
        "0-1:24.3.0(231204190000)(00)(60)(1)(0-1:24.2.1)(m3)",
        "(01234.567)",
        "0-1:24.4.0(1)",
        "!",
    ]);
    data.into_bytes()
}

/// DSMR 3: hex equipment identifiers, the same gas profile.
pub fn dsmr3() -> Vec<u8> {
    lines(&[
        "/ISk5\\2MT382-1000",
        "",
        "0-0:96.1.1(4B384547303034303436333935353037)",
        "1-0:1.8.1(12345.678*kWh)",
        "0-0:96.14.0(0002)",
        "0-1:96.1.0(3232323241424344313233343536373839)",
        "0-1:24.1.0(03)",
        "0-1:24.3.0(231204160000)(08)(60)(1)(0-1:24.2.1)(m3)",
        "(00001.001)",
        "0-1:24.4.0(1)",
        "!",
    ])
    .into_bytes()
}

/// NWA Warmtelink: DSMR 4 framing, a baud character that is not a digit, heat in GJ.
pub fn warmtelink() -> Vec<u8> {
    dsmr(
        "NWA-WARMTELINK",
        &lines(&[
            "1-3:0.2.8(42)",
            "0-0:1.0.0(231205143015W)",
            "0-0:96.1.1(4E57413132333435363738)",
            "0-0:96.13.1()",
            "0-0:96.13.0()",
            "0-1:24.1.0(004)",
            "0-1:96.1.0(3132333435363738)",
            "0-1:24.4.0(1)",
            "0-1:24.2.1(231205140000W)(0012.345*GJ)",
        ]),
    )
}

/// A DSMR 5 telegram whose CRC is below 0x1000, sent as three hex digits as some meters do.
pub fn dsmr_short_crc() -> Vec<u8> {
    for power in 0..4096 {
        let mut out = format!(
            "/KFM5KAIFA-METER\r\n\r\n{}!",
            lines(&[
                "1-3:0.2.8(50)",
                "0-0:1.0.0(231204120000W)",
                "0-0:96.1.1(4530303236303030303234313533363135)",
                "1-0:1.8.1(006285.065*kWh)",
                &format!("1-0:1.7.0({:02}.{:03}*kW)", power / 1000, power % 1000),
            ])
        )
        .into_bytes();
        let crc = ARC.checksum(&out);
        if (0x100..0x1000).contains(&crc) {
            out.extend(format!("{crc:X}\r\n").bytes());
            return out;
        }
    }
    unreachable!("one in sixteen CRCs is below 0x1000")
}

/// Fluvius e-MUCS: monthly maxima (0-0:98.1.0) and the power failure log (1-0:99.97.0).
pub fn fluvius() -> Vec<u8> {
    dsmr(
        "FLU5\\253769484_A",
        &lines(&[
            "0-0:96.1.4(50217)",
            "0-0:96.1.1(3153414731323334353637383930)",
            "0-0:1.0.0(231204120000W)",
            "1-0:1.8.1(000123.456*kWh)",
            "1-0:1.6.0(231202184500W)(03.456*kW)",
            "0-0:98.1.0(3)(1-0:1.6.0)(1-0:1.6.0)(230901000000S)(230817191500S)(04.321*kW)\
             (231001000000S)(230928073000S)(02.987*kW)(231101000000W)(231030180000W)(05.012*kW)",
            "1-0:99.97.0(2)(0-0:96.7.19)(230810103000S)(0000000240*s)(231115080000W)(0000003600*s)",
            "1-0:1.7.0(00.456*kW)",
        ]),
    )
}

/// A new meter: both profiles empty.
pub fn fluvius_empty_profiles() -> Vec<u8> {
    dsmr(
        "FLU5\\253769484_A",
        &lines(&[
            "0-0:96.1.1(3153414731323334353637383930)",
            "1-0:1.8.1(000000.012*kWh)",
            "0-0:98.1.0(0)(1-0:1.6.0)(1-0:1.6.0)()",
            "1-0:99.97.0(0)(0-0:96.7.19)",
            "1-0:1.7.0(00.001*kW)",
        ]),
    )
}

/// Prose that has everything a careless parser takes for telegrams: `/word` after a line end,
/// URLs, `(…)`, `!` at line ends, a line that starts like a data set.
pub fn prose() -> Vec<u8> {
    lines(&[
        "Copyright (c) 2024 the wattlet authors. All rights reserved!",
        "",
        "Permission is granted to use, copy and/or modify this text (the \"Text\"),",
        "see https://example.org/licenses/TEXT-1.0 or the copy in",
        "/licenses/TEXT-1.0 (section 4.2). Read it first!",
        "/usr/share/common-licenses holds more texts!",
        "1.2 (scope) This licence covers the Text only.",
        "THE TEXT IS PROVIDED AS IS(WITHOUT WARRANTY)!",
        "!",
    ])
    .into_bytes()
}

pub fn prose_then_mt174() -> Vec<u8> {
    let mut out = prose();
    out.extend(mt174());
    out
}

/// Every stream built here, by file name of its fuzz seed.
pub fn streams() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("iskra_mt174_max_demand.txt", mt174()),
        ("iskra_mt174_ack_echo.txt", mt174_session()),
        ("ultraheat_heat_meter.txt", ultraheat()),
        ("gateway_data_lines.txt", gateway_data_lines()),
        ("gateway_data_message.txt", gateway_data_message()),
        ("gateway_partial_header.txt", gateway_partial_header()),
        ("dsmr22_gas_next_line.txt", dsmr22()),
        ("dsmr3_gas_next_line.txt", dsmr3()),
        ("nwa_warmtelink.txt", warmtelink()),
        ("dsmr_three_digit_crc.txt", dsmr_short_crc()),
        ("fluvius_profiles.txt", fluvius()),
        ("fluvius_empty_profiles.txt", fluvius_empty_profiles()),
        ("prose.txt", prose()),
        ("prose_then_mt174.txt", prose_then_mt174()),
    ]
}
