//! Dense indices for plugs and houses, so that the operators keep their per-plug state in vectors
//! (a hash lookup per event, then array accesses) and still emit in key order.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::event::PlugKey;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Entities {
    plugs: Vec<PlugKey>,
    /// The house index of each plug.
    plug_house: Vec<u32>,
    /// House ids by house index.
    houses: Vec<u32>,
    /// House indices sorted by house id.
    house_order: Vec<u32>,
    // Derived from the vectors above; rebuilt after a restore instead of serialized (a JSON map
    // cannot have a struct key).
    #[serde(skip)]
    plug_index: HashMap<PlugKey, u32>,
    #[serde(skip)]
    house_index: HashMap<u32, u32>,
}

impl Entities {
    /// The plug's index, assigning the next one on first sight.
    pub fn intern(&mut self, key: PlugKey) -> u32 {
        if self.plug_index.len() != self.plugs.len() {
            self.rebuild();
        }
        if let Some(&i) = self.plug_index.get(&key) {
            return i;
        }
        let house = match self.house_index.get(&key.house) {
            Some(&h) => h,
            None => {
                let h = self.houses.len() as u32;
                self.houses.push(key.house);
                self.house_index.insert(key.house, h);
                let houses = &self.houses;
                let at = self
                    .house_order
                    .partition_point(|&o| houses[o as usize] < key.house);
                self.house_order.insert(at, h);
                h
            }
        };
        let i = self.plugs.len() as u32;
        self.plugs.push(key);
        self.plug_house.push(house);
        self.plug_index.insert(key, i);
        i
    }

    fn rebuild(&mut self) {
        self.plug_index = self
            .plugs
            .iter()
            .enumerate()
            .map(|(i, k)| (*k, i as u32))
            .collect();
        self.house_index = self
            .houses
            .iter()
            .enumerate()
            .map(|(i, h)| (*h, i as u32))
            .collect();
    }

    /// The invariants of a decoded state: parallel vectors of equal length, indices in range,
    /// `house_order` a permutation sorted by house id, no key twice.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.plugs.len() != self.plug_house.len() {
            return Err("plug vectors differ in length".into());
        }
        if self.houses.len() != self.house_order.len() {
            return Err("house vectors differ in length".into());
        }
        if self
            .plug_house
            .iter()
            .any(|&h| h as usize >= self.houses.len())
        {
            return Err("a plug's house index is out of range".into());
        }
        let mut seen = vec![false; self.houses.len()];
        for &h in &self.house_order {
            match seen.get_mut(h as usize) {
                Some(s) if !*s => *s = true,
                _ => return Err("house order is not a permutation".into()),
            }
        }
        if self
            .house_order
            .windows(2)
            .any(|w| self.houses[w[0] as usize] >= self.houses[w[1] as usize])
        {
            return Err("house order is not strictly by house id".into());
        }
        let keys: std::collections::HashSet<_> = self.plugs.iter().collect();
        if keys.len() != self.plugs.len() {
            return Err("a plug key appears twice".into());
        }
        for (p, key) in self.plugs.iter().enumerate() {
            if self.houses[self.plug_house[p] as usize] != key.house {
                return Err("a plug's house index names another house".into());
            }
        }
        Ok(())
    }

    pub fn plug(&self, i: u32) -> PlugKey {
        self.plugs[i as usize]
    }

    pub fn plug_count(&self) -> usize {
        self.plugs.len()
    }

    pub fn house_of(&self, plug: u32) -> u32 {
        self.plug_house[plug as usize]
    }

    pub fn house_id(&self, house: u32) -> u32 {
        self.houses[house as usize]
    }

    pub fn house_count(&self) -> usize {
        self.houses.len()
    }

    /// House indices in house-id order.
    pub fn house_order(&self) -> &[u32] {
        &self.house_order
    }
}
