//! Decoding and encoding of `TensorProto` values.
//!
//! The rest of the tool computes in f32 (weights, activations) and i64 (shapes, indices), so
//! decoding widens or narrows every element type to one of those two while remembering the
//! original type; encoding writes little-endian `raw_data`, which every runtime reads.

use super::proto::{tensor_proto::DataType, TensorProto};
use super::OnnxError;

/// Element values of a decoded tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// FLOAT, DOUBLE, FLOAT16 and BFLOAT16 tensors.
    Float(Vec<f32>),
    /// Every integer type and BOOL.
    Int(Vec<i64>),
}

/// A decoded dense tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub dims: Vec<i64>,
    /// The element type the model stores (a `TensorProto.DataType` value).
    pub elem_type: DataType,
    pub data: TensorData,
}

impl Tensor {
    pub fn from_f32(dims: Vec<i64>, values: Vec<f32>) -> Self {
        Tensor { dims, elem_type: DataType::Float, data: TensorData::Float(values) }
    }

    pub fn from_i64(dims: Vec<i64>, values: Vec<i64>) -> Self {
        Tensor { dims, elem_type: DataType::Int64, data: TensorData::Int(values) }
    }

    pub fn len(&self) -> usize {
        match &self.data {
            TensorData::Float(v) => v.len(),
            TensorData::Int(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values as f32 (integers converted).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            TensorData::Float(v) => v.clone(),
            TensorData::Int(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// Values as i64; floats are truncated toward zero, as ONNX Cast does.
    pub fn to_i64(&self) -> Vec<i64> {
        match &self.data {
            TensorData::Int(v) => v.clone(),
            TensorData::Float(v) => v.iter().map(|&x| x as i64).collect(),
        }
    }
}

/// Number of elements described by `dims` (1 for a scalar), or None on a negative dimension
/// or an overflow.
pub fn element_count(dims: &[i64]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| usize::try_from(d).ok().and_then(|d| acc.checked_mul(d)))
}

/// Decodes a tensor whose data is inline (external data must have been resolved by the loader).
pub fn decode(t: &TensorProto) -> Result<Tensor, OnnxError> {
    let bad = |reason: String| OnnxError::BadTensor { name: t.name().to_string(), reason };
    let elem_type = DataType::try_from(t.data_type())
        .map_err(|_| bad(format!("unknown data_type {}", t.data_type())))?;
    if t.data_location() == super::proto::tensor_proto::DataLocation::External {
        return Err(bad("its data is external and was not loaded".into()));
    }
    let count = element_count(&t.dims).ok_or_else(|| bad(format!("invalid dims {:?}", t.dims)))?;
    let data = match t.raw_data.as_deref() {
        Some(raw) => decode_raw(raw, elem_type, count).map_err(bad)?,
        None => decode_typed(t, elem_type).map_err(bad)?,
    };
    let tensor = Tensor { dims: t.dims.clone(), elem_type, data };
    if tensor.len() != count {
        return Err(bad(format!(
            "dims {:?} describe {count} elements but the data holds {}",
            t.dims,
            tensor.len()
        )));
    }
    Ok(tensor)
}

fn decode_raw(raw: &[u8], elem_type: DataType, count: usize) -> Result<TensorData, String> {
    use DataType as D;
    let width = match elem_type {
        D::Float | D::Int32 | D::Uint32 => 4,
        D::Double | D::Int64 | D::Uint64 => 8,
        D::Float16 | D::Bfloat16 | D::Int16 | D::Uint16 => 2,
        D::Int8 | D::Uint8 | D::Bool => 1,
        other => return Err(format!("element type {} is not supported", other.as_str_name())),
    };
    // Checked multiplication: dims are untrusted, and a wrapped product could match a short
    // raw_data (found by fuzzing too, docs/fuzzing.md).
    let needed = count.checked_mul(width);
    if needed != Some(raw.len()) {
        let needed = needed.map_or_else(|| "more bytes than memory can hold".to_string(), |n| n.to_string());
        return Err(format!("raw_data holds {} bytes, {count} elements of {} need {needed}", raw.len(), elem_type.as_str_name()));
    }
    let chunks = raw.chunks_exact(width);
    Ok(match elem_type {
        D::Float => TensorData::Float(chunks.map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()),
        D::Double => TensorData::Float(chunks.map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect()),
        D::Float16 => TensorData::Float(chunks.map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect()),
        D::Bfloat16 => TensorData::Float(chunks.map(|c| bf16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect()),
        D::Int64 => TensorData::Int(chunks.map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()),
        D::Uint64 => TensorData::Int(chunks.map(|c| u64::from_le_bytes(c.try_into().unwrap()) as i64).collect()),
        D::Int32 => TensorData::Int(chunks.map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64).collect()),
        D::Uint32 => TensorData::Int(chunks.map(|c| u32::from_le_bytes(c.try_into().unwrap()) as i64).collect()),
        D::Int16 => TensorData::Int(chunks.map(|c| i16::from_le_bytes([c[0], c[1]]) as i64).collect()),
        D::Uint16 => TensorData::Int(chunks.map(|c| u16::from_le_bytes([c[0], c[1]]) as i64).collect()),
        D::Int8 => TensorData::Int(raw.iter().map(|&b| b as i8 as i64).collect()),
        D::Uint8 | D::Bool => TensorData::Int(raw.iter().map(|&b| b as i64).collect()),
        _ => unreachable!("width match above rejects other types"),
    })
}

fn decode_typed(t: &TensorProto, elem_type: DataType) -> Result<TensorData, String> {
    use DataType as D;
    Ok(match elem_type {
        D::Float => TensorData::Float(t.float_data.clone()),
        D::Double => TensorData::Float(t.double_data.iter().map(|&x| x as f32).collect()),
        // The specification stores 16-bit floats as their bit patterns in int32_data.
        D::Float16 => TensorData::Float(t.int32_data.iter().map(|&x| f16_to_f32(x as u16)).collect()),
        D::Bfloat16 => TensorData::Float(t.int32_data.iter().map(|&x| bf16_to_f32(x as u16)).collect()),
        D::Int64 => TensorData::Int(t.int64_data.clone()),
        D::Uint64 | D::Uint32 => TensorData::Int(t.uint64_data.iter().map(|&x| x as i64).collect()),
        D::Int32 | D::Int16 | D::Int8 | D::Uint16 | D::Uint8 | D::Bool => {
            TensorData::Int(t.int32_data.iter().map(|&x| x as i64).collect())
        }
        other => return Err(format!("element type {} is not supported", other.as_str_name())),
    })
}

/// IEEE 754 half precision to f32, subnormals and infinities included.
fn f16_to_f32(bits: u16) -> f32 {
    let sign = ((bits >> 15) as u32) << 31;
    let exp = ((bits >> 10) & 0x1f) as u32;
    let frac = (bits & 0x3ff) as u32;
    let magnitude = match (exp, frac) {
        (0, 0) => 0,
        (0, _) => return f32::from_bits(sign) + (if sign != 0 { -1.0 } else { 1.0 }) * frac as f32 * 2f32.powi(-24),
        (0x1f, _) => 0x7f80_0000 | (frac << 13),
        _ => ((exp + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(sign | magnitude)
}

fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

/// Reads a serialized `TensorProto` file (the `.pb` test-data format of ONNX).
pub fn load_tensor_proto(path: &std::path::Path) -> Result<TensorProto, OnnxError> {
    let bytes = std::fs::read(path).map_err(|source| OnnxError::Read { path: path.to_path_buf(), source })?;
    <TensorProto as prost::Message>::decode(bytes.as_slice())
        .map_err(|e| OnnxError::NotOnnx { path: path.to_path_buf(), reason: format!("not a serialized TensorProto ({e})") })
}

/// Reads and decodes a serialized `TensorProto` file.
pub fn load_tensor(path: &std::path::Path) -> Result<Tensor, OnnxError> {
    decode(&load_tensor_proto(path)?)
}

/// Encodes f32 values as a FLOAT tensor with little-endian raw_data.
pub fn encode_f32(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    raw_tensor(name, dims, DataType::Float, raw)
}

/// Encodes i64 values as an INT64 tensor with little-endian raw_data.
pub fn encode_i64(name: &str, dims: &[i64], values: &[i64]) -> TensorProto {
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    raw_tensor(name, dims, DataType::Int64, raw)
}

/// Encodes a decoded tensor back in its own element type, for the types shape arithmetic and
/// weights use (FLOAT, INT64, INT32, BOOL); None for the others.
pub fn encode(name: &str, t: &Tensor) -> Option<TensorProto> {
    let raw: Vec<u8> = match (&t.data, t.elem_type) {
        (TensorData::Float(v), DataType::Float) => return Some(encode_f32(name, &t.dims, v)),
        (TensorData::Int(v), DataType::Int64) => return Some(encode_i64(name, &t.dims, v)),
        (TensorData::Int(v), DataType::Int32) => v.iter().flat_map(|&x| (x as i32).to_le_bytes()).collect(),
        (TensorData::Int(v), DataType::Bool) => v.iter().map(|&x| u8::from(x != 0)).collect(),
        _ => return None,
    };
    Some(raw_tensor(name, &t.dims, t.elem_type, raw))
}

fn raw_tensor(name: &str, dims: &[i64], elem_type: DataType, raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        dims: dims.to_vec(),
        data_type: Some(elem_type as i32),
        raw_data: Some(raw),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_round_trips_through_raw_data() {
        let t = encode_f32("w", &[2, 2], &[1.0, -2.5, 0.0, 3.25]);
        let d = decode(&t).unwrap();
        assert_eq!(d.dims, vec![2, 2]);
        assert_eq!(d.data, TensorData::Float(vec![1.0, -2.5, 0.0, 3.25]));
    }

    #[test]
    fn huge_dims_with_raw_data_are_an_error_not_an_overflow() {
        // Found by fuzzing (docs/fuzzing.md): 2^62 elements x 4 bytes wrapped to 0 = raw_data's length.
        let t = TensorProto {
            data_type: Some(DataType::Float as i32),
            dims: vec![1 << 61, 2],
            raw_data: Some(vec![]),
            ..Default::default()
        };
        let e = decode(&t).unwrap_err().to_string();
        assert!(e.contains("raw_data holds 0 bytes, 4611686018427387904 elements of FLOAT need more bytes than memory can hold"), "{e}");
    }

    #[test]
    fn typed_int64_and_scalar() {
        let t = TensorProto { data_type: Some(DataType::Int64 as i32), int64_data: vec![7], ..Default::default() };
        assert_eq!(decode(&t).unwrap().data, TensorData::Int(vec![7]));
    }

    #[test]
    fn half_precision_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
    }

    #[test]
    fn size_mismatch_is_an_error_naming_the_tensor() {
        let mut t = encode_f32("conv.weight", &[3], &[1.0, 2.0]);
        t.dims = vec![3];
        let e = decode(&t).unwrap_err().to_string();
        assert!(e.contains("conv.weight") && e.contains("8 bytes"), "{e}");
    }
}
