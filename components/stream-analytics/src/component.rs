//! The WIT export `wattlet:stream/operators` over the native [`Pipeline`], built for
//! wasm32-wasip2. Thin: the conversions are in `conversions.rs`.

use std::cell::RefCell;

use crate::{Config, Event, Pipeline};

wit_bindgen::generate!({
    path: "../../wit/stream",
    world: "stream-operators",
});

pub(crate) use exports::wattlet::stream::operators as wit;

struct Component;

export!(Component);

impl wit::Guest for Component {
    type Pipeline = PipelineResource;
}

/// The resource's state: methods take `&self`, and an instance runs one call at a time.
pub struct PipelineResource {
    pipeline: RefCell<Pipeline>,
    /// The batch converted to native events, reused between pushes.
    batch: RefCell<Vec<Event>>,
}

impl PipelineResource {
    fn of(pipeline: Pipeline) -> Self {
        PipelineResource {
            pipeline: RefCell::new(pipeline),
            batch: RefCell::new(Vec::new()),
        }
    }
}

impl wit::GuestPipeline for PipelineResource {
    fn new(config: wit::Config) -> Self {
        Self::of(Pipeline::new(Config::from(config)))
    }

    fn push(&self, events: Vec<wit::Event>) -> wit::Outputs {
        let mut batch = self.batch.borrow_mut();
        batch.clear();
        batch.extend(events.into_iter().map(Event::from));
        let mut pipeline = self.pipeline.borrow_mut();
        let mut out = crate::Outputs::default();
        for event in batch.iter() {
            pipeline.push_into(event, &mut out);
        }
        out.into()
    }

    fn finish(&self) -> wit::Outputs {
        self.pipeline.borrow_mut().finish().into()
    }

    fn stats(&self) -> wit::Stats {
        self.pipeline.borrow().stats().into()
    }

    fn snapshot(&self) -> Vec<u8> {
        self.pipeline.borrow().snapshot()
    }

    fn restore(bytes: Vec<u8>) -> Result<wit::Pipeline, String> {
        Pipeline::restore(&bytes)
            .map(|pipeline| wit::Pipeline::new(Self::of(pipeline)))
            .map_err(|error| error.to_string())
    }
}
