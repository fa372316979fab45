//! `wattlet:stream` ↔ the `wattlet-stream-analytics` library's types (field for field).

use wattlet_stream_analytics as native;

use crate::stream::bindings::exports::wattlet::stream::operators as wit;

impl From<native::Property> for wit::Property {
    fn from(property: native::Property) -> Self {
        match property {
            native::Property::Work => wit::Property::Work,
            native::Property::Load => wit::Property::Load,
        }
    }
}

impl From<native::Event> for wit::Event {
    fn from(e: native::Event) -> Self {
        wit::Event {
            id: e.id,
            ts: e.ts,
            value_mw: e.value_mw,
            property: e.property.into(),
            plug: e.plug,
            household: e.household,
            house: e.house,
        }
    }
}

impl From<native::Config> for wit::Config {
    fn from(config: native::Config) -> Self {
        wit::Config {
            lateness: config.lateness,
            forecast: config.queries.forecast,
            outliers: config.queries.outliers,
            per_house: config.per_house,
        }
    }
}

impl From<wit::HouseForecast> for native::HouseForecast {
    fn from(f: wit::HouseForecast) -> Self {
        native::HouseForecast {
            at: f.at,
            ts: f.ts,
            house: f.house,
            slice_len: f.slice_len,
            load_w: f.load_w,
        }
    }
}

impl From<wit::PlugForecast> for native::PlugForecast {
    fn from(f: wit::PlugForecast) -> Self {
        native::PlugForecast {
            at: f.at,
            ts: f.ts,
            house: f.house,
            household: f.household,
            plug: f.plug,
            slice_len: f.slice_len,
            load_w: f.load_w,
        }
    }
}

impl From<wit::Outlier> for native::Outlier {
    fn from(o: wit::Outlier) -> Self {
        native::Outlier {
            ts: o.ts,
            window: o.window,
            house: o.house,
            above: o.above,
            plugs: o.plugs,
            percent: o.percent,
        }
    }
}

impl From<wit::Outputs> for native::Outputs {
    fn from(out: wit::Outputs) -> Self {
        native::Outputs {
            houses: out.houses.into_iter().map(Into::into).collect(),
            plugs: out.plugs.into_iter().map(Into::into).collect(),
            outliers: out.outliers.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<wit::Stats> for native::Stats {
    fn from(s: wit::Stats) -> Self {
        native::Stats {
            events: s.events,
            late: s.late,
            outputs: s.outputs,
        }
    }
}
