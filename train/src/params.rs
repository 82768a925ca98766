//! Named, ordered trainable parameters.

use std::collections::{HashMap, HashSet};

use candle_core::{Tensor, Var};

use crate::{Error, Result};

/// The trainable parameters of a model: `Var`s with unique names, in a fixed order.
///
/// The order matters: gradient accumulation, clipping and the optimizer walk the
/// parameters in this order, so a fixed order keeps runs reproducible.
#[derive(Clone, Debug, Default)]
pub struct Params {
    vars: Vec<(String, Var)>,
}

impl Params {
    /// Builds from `(name, var)` pairs, keeping their order. Names must be unique.
    pub fn new(vars: Vec<(String, Var)>) -> Result<Self> {
        let mut seen = HashSet::new();
        for (name, _) in &vars {
            if !seen.insert(name.as_str()) {
                return Err(Error::DuplicateParam(name.clone()));
            }
        }
        Ok(Self { vars })
    }

    /// Builds from a candle-nn `VarMap`, sorted by name (a `VarMap` is a hash map,
    /// so sorting is what makes the order deterministic).
    pub fn from_var_map(map: &candle_nn::VarMap) -> Self {
        let data = match map.data().lock() {
            Ok(guard) => guard,
            // A poisoned lock only means another thread panicked while holding it;
            // the map itself is still a plain map of Vars.
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut vars: Vec<(String, Var)> =
            data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        Self { vars }
    }

    /// The parameters in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.vars.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// Looks a parameter up by name.
    pub fn get(&self, name: &str) -> Option<&Var> {
        self.vars.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Number of parameter tensors.
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// True when there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// Total number of scalar elements over all parameters.
    pub fn num_elements(&self) -> usize {
        self.vars.iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// Deep copies of the current values (a `Var` is updated in place, so a plain
    /// clone of its tensor would keep changing).
    pub fn snapshot(&self) -> Result<Vec<(String, Tensor)>> {
        self.vars
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
            .collect()
    }

    /// Overwrites every parameter from `tensors` (e.g. a checkpoint). Every parameter
    /// must be present with the same shape; values are cast to the parameter's dtype.
    pub fn load(&self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        for (name, var) in &self.vars {
            let src = tensors
                .get(name)
                .ok_or_else(|| Error::MissingParam(name.clone()))?;
            if src.dims() != var.dims() {
                return Err(Error::ShapeMismatch {
                    name: name.clone(),
                    expected: var.dims().to_vec(),
                    got: src.dims().to_vec(),
                });
            }
            let src = src.to_dtype(var.dtype())?.to_device(var.device())?;
            var.set(&src)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn lookup_count_and_duplicates() -> Result<()> {
        let dev = Device::Cpu;
        let a = Var::zeros((2, 3), DType::F32, &dev)?;
        let b = Var::zeros(4, DType::F32, &dev)?;
        let p = Params::new(vec![("a".into(), a), ("b".into(), b.clone())])?;
        assert_eq!(p.len(), 2);
        assert_eq!(p.num_elements(), 10);
        assert!(p.get("b").is_some() && p.get("c").is_none());
        let names: Vec<&str> = p.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "b"]);
        let dup = Params::new(vec![("b".into(), b.clone()), ("b".into(), b)]);
        assert!(matches!(dup, Err(Error::DuplicateParam(n)) if n == "b"));
        Ok(())
    }

    #[test]
    fn load_checks_shapes_and_names() -> Result<()> {
        let dev = Device::Cpu;
        let p = Params::new(vec![("w".into(), Var::zeros(3, DType::F32, &dev)?)])?;
        let mut map = HashMap::new();
        map.insert("w".to_string(), Tensor::new(&[1f32, 2., 3.], &dev)?);
        p.load(&map)?;
        let got: Vec<f32> = p
            .get("w")
            .map(|v| v.to_vec1())
            .transpose()?
            .unwrap_or_default();
        assert_eq!(got, [1., 2., 3.]);
        map.insert("w".to_string(), Tensor::zeros(2, DType::F32, &dev)?);
        assert!(matches!(p.load(&map), Err(Error::ShapeMismatch { .. })));
        assert!(matches!(
            p.load(&HashMap::new()),
            Err(Error::MissingParam(_))
        ));
        Ok(())
    }
}
