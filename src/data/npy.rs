//! The NumPy `.npy` format (versions 1.0, 2.0, 3.0), read and written without NumPy.
//!
//! A file is the magic `\x93NUMPY`, a version, a header length, a header that is a Python dict
//! literal (`{'descr': '<f4', 'fortran_order': False, 'shape': (10, 32, 32, 3), }`) and the raw
//! data in C order. Only little-endian numeric dtypes are read: images are `|u1` or `<f4`,
//! labels any integer type. This module knows nothing about images; `arrays.rs` does.

use std::io::Write;
use std::path::Path;

use super::DataError;

const MAGIC: &[u8] = b"\x93NUMPY";

/// The element types we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    Bool,
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F16,
    F32,
    F64,
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Dtype::Bool | Dtype::U8 | Dtype::I8 => 1,
            Dtype::U16 | Dtype::I16 | Dtype::F16 => 2,
            Dtype::U32 | Dtype::I32 | Dtype::F32 => 4,
            Dtype::U64 | Dtype::I64 | Dtype::F64 => 8,
        }
    }

    /// NumPy's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::Bool => "bool",
            Dtype::U8 => "uint8",
            Dtype::I8 => "int8",
            Dtype::U16 => "uint16",
            Dtype::I16 => "int16",
            Dtype::U32 => "uint32",
            Dtype::I32 => "int32",
            Dtype::U64 => "uint64",
            Dtype::I64 => "int64",
            Dtype::F16 => "float16",
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
        }
    }

    /// Parses a `descr` such as `<f4`, `|u1`, `=i8`; big-endian multi-byte types are refused.
    fn parse(descr: &str) -> Result<Dtype, String> {
        let (order, code) = match descr.chars().next() {
            Some(c @ ('<' | '>' | '|' | '=')) => (c, &descr[1..]),
            _ => ('=', descr),
        };
        let dtype = match code {
            "b1" | "?" => Dtype::Bool,
            "u1" => Dtype::U8,
            "i1" => Dtype::I8,
            "u2" => Dtype::U16,
            "i2" => Dtype::I16,
            "u4" => Dtype::U32,
            "i4" => Dtype::I32,
            "u8" => Dtype::U64,
            "i8" => Dtype::I64,
            "f2" => Dtype::F16,
            "f4" => Dtype::F32,
            "f8" => Dtype::F64,
            _ => return Err(format!("dtype `{descr}` is not supported (images: uint8 or float32; labels: an integer type)")),
        };
        if order == '>' && dtype.size() > 1 {
            return Err(format!("dtype `{descr}` is big-endian; save the array with `x.astype(x.dtype.newbyteorder('<'))`"));
        }
        Ok(dtype)
    }
}

/// An array read from a `.npy` file: shape, element type and the little-endian data bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub dtype: Dtype,
    data: Vec<u8>,
}

/// Image values as stored: bytes or floats.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    U8(Vec<u8>),
    F32(Vec<f32>),
}

impl NpyArray {
    pub fn read(path: &Path) -> Result<NpyArray, DataError> {
        let bytes = std::fs::read(path).map_err(|e| DataError::read(path, e))?;
        NpyArray::parse(bytes).map_err(|reason| DataError::format(path, reason))
    }

    /// Parses a whole `.npy` file held in memory (reusing its buffer for the data).
    pub fn parse(mut bytes: Vec<u8>) -> Result<NpyArray, String> {
        if !bytes.starts_with(MAGIC) || bytes.len() < 8 {
            return Err("not a .npy file (it does not start with \\x93NUMPY)".into());
        }
        let (major, minor) = (bytes[6], bytes[7]);
        let (len_bytes, utf8) = match major {
            1 => (2, false),
            2 => (4, false),
            3 => (4, true),
            _ => return Err(format!(".npy format version {major}.{minor} is not supported (1.0, 2.0 and 3.0 are)")),
        };
        let start = 8 + len_bytes;
        if bytes.len() < start {
            return Err("the .npy header is truncated".into());
        }
        let header_len = if len_bytes == 2 {
            u16::from_le_bytes([bytes[8], bytes[9]]) as usize
        } else {
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize
        };
        let end = start.checked_add(header_len).filter(|&e| e <= bytes.len()).ok_or("the .npy header is truncated")?;
        let header = if utf8 {
            std::str::from_utf8(&bytes[start..end]).map_err(|_| "the .npy header is not UTF-8".to_string())?.to_string()
        } else {
            bytes[start..end].iter().map(|&b| char::from(b)).collect()
        };
        let (dtype, shape) = parse_header(&header).map_err(|e| format!("bad .npy header `{}`: {e}", header.trim_end()))?;
        let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("the .npy shape overflows")?;
        let expected = count.checked_mul(dtype.size()).ok_or("the .npy shape overflows")?;
        let held = bytes.len() - end;
        if held != expected {
            return Err(format!(
                "the header promises {expected} bytes of data (shape {}, {}), the file holds {held} ({})",
                shape_string(&shape),
                dtype.name(),
                if held < expected { "short file: truncated download or copy" } else { "extra bytes after the array" }
            ));
        }
        bytes.drain(..end);
        Ok(NpyArray { shape, dtype, data: bytes })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The data as image values: uint8 bytes, or float32 values.
    pub fn into_values(self) -> Result<Values, String> {
        match self.dtype {
            Dtype::U8 => Ok(Values::U8(self.data)),
            Dtype::F32 => Ok(Values::F32(self.data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())),
            other => Err(format!("images of dtype {} are not supported: save them as uint8 (0..255) or float32 in [0, 1]", other.name())),
        }
    }

    /// The data as integer labels; fails for non-integer dtypes and values beyond i64.
    pub fn to_labels(&self) -> Result<Vec<i64>, String> {
        let d = &self.data;
        let le8 = |b: &[u8]| [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
        Ok(match self.dtype {
            Dtype::U8 => d.iter().map(|&b| i64::from(b)).collect(),
            Dtype::I8 => d.iter().map(|&b| i64::from(b as i8)).collect(),
            Dtype::U16 => d.chunks_exact(2).map(|b| i64::from(u16::from_le_bytes([b[0], b[1]]))).collect(),
            Dtype::I16 => d.chunks_exact(2).map(|b| i64::from(i16::from_le_bytes([b[0], b[1]]))).collect(),
            Dtype::U32 => d.chunks_exact(4).map(|b| i64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))).collect(),
            Dtype::I32 => d.chunks_exact(4).map(|b| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))).collect(),
            Dtype::I64 => d.chunks_exact(8).map(|b| i64::from_le_bytes(le8(b))).collect(),
            Dtype::U64 => d
                .chunks_exact(8)
                .map(|b| i64::try_from(u64::from_le_bytes(le8(b))).map_err(|_| "a uint64 label does not fit in int64".to_string()))
                .collect::<Result<_, _>>()?,
            other => {
                return Err(format!(
                    "labels of dtype {} are not supported: save class indices as an integer type (e.g. y.astype(np.int64))",
                    other.name()
                ))
            }
        })
    }
}

/// `(10000, 32, 32, 3)` as NumPy prints shapes.
pub fn shape_string(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!("({})", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    }
}

/// The `descr` and `shape` of a header dict; `fortran_order` must be False.
fn parse_header(header: &str) -> Result<(Dtype, Vec<usize>), String> {
    let mut parser = Literal { s: header.as_bytes(), i: 0 };
    let Value::Dict(entries) = parser.value()? else { return Err("not a dict".into()) };
    parser.skip_ws();
    if parser.i != parser.s.len() {
        return Err("text after the dict".into());
    }
    let get = |key: &str| entries.iter().find(|(k, _)| k == key).map(|(_, v)| v).ok_or(format!("no `{key}` key"));
    let dtype = match get("descr")? {
        Value::Str(s) => Dtype::parse(s)?,
        _ => return Err("structured dtypes (records) are not supported; save one plain array per file".into()),
    };
    match get("fortran_order")? {
        Value::Bool(false) => {}
        Value::Bool(true) => return Err("Fortran-ordered arrays are not supported; save `np.ascontiguousarray(x)`".into()),
        _ => return Err("`fortran_order` is not True or False".into()),
    }
    let shape = match get("shape")? {
        Value::Seq(items) => items
            .iter()
            .map(|v| match v {
                Value::Int(n) => usize::try_from(*n).map_err(|_| "shape entry too large".to_string()),
                _ => Err("shape entries must be integers".to_string()),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err("`shape` is not a tuple".into()),
    };
    Ok((dtype, shape))
}

/// The Python literals a header may contain.
enum Value {
    Str(String),
    Bool(bool),
    None,
    Int(u64),
    Seq(Vec<Value>),
    Dict(Vec<(String, Value)>),
}

/// A small recursive-descent parser of Python literals (strings, ints, booleans, None, tuples,
/// lists, dicts), tolerant of whitespace, trailing commas and Python 2's `L` suffix.
struct Literal<'a> {
    s: &'a [u8],
    i: usize,
}

impl Literal<'_> {
    fn skip_ws(&mut self) {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected `{}` at offset {}", char::from(c), self.i))
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        match self.peek() {
            Some(b'{') => self.dict(),
            Some(b'(') => self.seq(b')'),
            Some(b'[') => self.seq(b']'),
            Some(q @ (b'\'' | b'"')) => self.string(q).map(Value::Str),
            Some(c) if c.is_ascii_digit() => self.int(),
            Some(c) if c.is_ascii_alphabetic() => self.word(),
            Some(c) => Err(format!("unexpected `{}` at offset {}", char::from(c), self.i)),
            None => Err("unexpected end".into()),
        }
    }

    fn dict(&mut self) -> Result<Value, String> {
        self.expect(b'{')?;
        let mut entries = Vec::new();
        loop {
            if self.peek() == Some(b'}') {
                self.i += 1;
                return Ok(Value::Dict(entries));
            }
            let key = match self.value()? {
                Value::Str(s) => s,
                _ => return Err("dict keys must be strings".into()),
            };
            self.expect(b':')?;
            entries.push((key, self.value()?));
            if self.peek() == Some(b',') {
                self.i += 1;
            } else {
                self.expect(b'}')?;
                return Ok(Value::Dict(entries));
            }
        }
    }

    fn seq(&mut self, close: u8) -> Result<Value, String> {
        self.i += 1;
        let mut items = Vec::new();
        loop {
            if self.peek() == Some(close) {
                self.i += 1;
                return Ok(Value::Seq(items));
            }
            items.push(self.value()?);
            if self.peek() == Some(b',') {
                self.i += 1;
            } else {
                self.expect(close)?;
                return Ok(Value::Seq(items));
            }
        }
    }

    fn string(&mut self, quote: u8) -> Result<String, String> {
        self.i += 1;
        let start = self.i;
        while let Some(&c) = self.s.get(self.i) {
            if c == quote {
                let text = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                self.i += 1;
                return Ok(text);
            }
            self.i += 1;
        }
        Err("unterminated string".into())
    }

    fn int(&mut self) -> Result<Value, String> {
        let start = self.i;
        while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        let digits = std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?;
        let n = digits.parse::<u64>().map_err(|e| format!("`{digits}`: {e}"))?;
        if matches!(self.s.get(self.i), Some(b'L' | b'l')) {
            self.i += 1;
        }
        Ok(Value::Int(n))
    }

    fn word(&mut self) -> Result<Value, String> {
        let start = self.i;
        while self.s.get(self.i).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') {
            self.i += 1;
        }
        match &self.s[start..self.i] {
            b"True" => Ok(Value::Bool(true)),
            b"False" => Ok(Value::Bool(false)),
            b"None" => Ok(Value::None),
            other => Err(format!("unexpected word `{}`", String::from_utf8_lossy(other))),
        }
    }
}

/// Element types `write_npy` can write.
pub trait NpyElement: Copy {
    /// NumPy's `descr` of the type.
    const DESCR: &'static str;
    fn extend_le(self, out: &mut Vec<u8>);
}

impl NpyElement for u8 {
    const DESCR: &'static str = "|u1";
    fn extend_le(self, out: &mut Vec<u8>) {
        out.push(self);
    }
}

impl NpyElement for i64 {
    const DESCR: &'static str = "<i8";
    fn extend_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl NpyElement for f32 {
    const DESCR: &'static str = "<f4";
    fn extend_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

/// The bytes of a `.npy` file (format 1.0, or 2.0 when the header needs it) holding `data`
/// with `shape` in C order.
pub fn npy_bytes<T: NpyElement>(shape: &[usize], data: &[T]) -> Result<Vec<u8>, String> {
    if shape.iter().product::<usize>() != data.len() {
        return Err(format!("shape {} does not hold {} values", shape_string(shape), data.len()));
    }
    let dict = format!("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}", T::DESCR, shape_string(shape));
    // NumPy pads the header with spaces and a newline so that the data starts 64-byte aligned.
    let (version, len_bytes) = if dict.len() + 1 + 10 <= u16::MAX as usize { (1u8, 2) } else { (2u8, 4) };
    let prefix = MAGIC.len() + 2 + len_bytes;
    let header_len = (prefix + dict.len() + 1).div_ceil(64) * 64 - prefix;
    let mut out = Vec::with_capacity(prefix + header_len + std::mem::size_of_val(data));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if len_bytes == 2 {
        out.extend_from_slice(&(header_len as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header_len as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(prefix + header_len - 1, b' ');
    out.push(b'\n');
    for &v in data {
        v.extend_le(&mut out);
    }
    Ok(out)
}

/// Writes `data` (C order, `shape`) as a `.npy` file, atomically: into a temporary file in the
/// same folder, then renamed over `path`, so that a reader never sees half a file.
pub fn write_npy<T: NpyElement>(path: &Path, shape: &[usize], data: &[T]) -> Result<(), DataError> {
    let bytes = npy_bytes(shape, data).map_err(|reason| DataError::format(path, reason))?;
    write_atomically(path, &bytes)
}

/// Writes `bytes` to `path` through a temporary file in the same folder renamed over it, so a
/// reader never sees half a file and a failed write leaves the old file in place.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    let write_error = |source| DataError::Write { path: path.to_path_buf(), source };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| write_error(std::io::Error::other("not a file name")))?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(write_error(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file with a hand-written header, as other writers (or older NumPy) produce them.
    fn raw_npy(major: u8, header: &str, data: &[u8]) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.extend([major, 0]);
        if major == 1 {
            v.extend((header.len() as u16).to_le_bytes());
        } else {
            v.extend((header.len() as u32).to_le_bytes());
        }
        v.extend(header.as_bytes());
        v.extend(data);
        v
    }

    #[test]
    fn write_then_read_round_trips_u8_i64_f32() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let data: Vec<u8> = (0..24).collect();
        write_npy(&path, &[2, 3, 4], &data).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!((bytes.len() - 24) % 64, 0, "data 64-byte aligned");
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let a = NpyArray::read(&path).unwrap();
        assert_eq!((a.shape.clone(), a.dtype), (vec![2, 3, 4], Dtype::U8));
        assert_eq!(a.into_values().unwrap(), Values::U8(data));

        write_npy(&path, &[3], &[5i64, -1, 1 << 40]).unwrap();
        assert_eq!(NpyArray::read(&path).unwrap().to_labels().unwrap(), vec![5, -1, 1 << 40]);
        write_npy(&path, &[2], &[0.5f32, 1.0]).unwrap();
        assert_eq!(NpyArray::read(&path).unwrap().into_values().unwrap(), Values::F32(vec![0.5, 1.0]));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left behind");
        assert!(write_npy(&path, &[2, 2], &[1u8]).unwrap_err().to_string().contains("(2, 2) does not hold 1"));
    }

    #[test]
    fn headers_of_all_versions_and_styles_parse() {
        let h = "{\"descr\":\"<i4\",\"shape\":(2L,) ,'fortran_order':False}\n";
        for major in [1, 2, 3] {
            let a = NpyArray::parse(raw_npy(major, h, &[1, 0, 0, 0, 255, 255, 255, 255])).unwrap();
            assert_eq!(a.to_labels().unwrap(), vec![1, -1], "version {major}");
        }
        let scalar = NpyArray::parse(raw_npy(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (), }", &[7])).unwrap();
        assert_eq!((scalar.shape.len(), scalar.len()), (0, 1));
        let u2 = NpyArray::parse(raw_npy(1, "{'descr': '<u2', 'fortran_order': False, 'shape': (1,)}", &[1, 1])).unwrap();
        assert_eq!(u2.to_labels().unwrap(), vec![257]);
    }

    #[test]
    fn malformed_files_are_refused_with_the_reason() {
        let err = |bytes: Vec<u8>| NpyArray::parse(bytes).unwrap_err();
        assert!(err(b"PK\x03\x04 a zip".to_vec()).contains("not a .npy file"));
        assert!(err(raw_npy(4, "{}", &[])).contains("version 4.0"));
        let mut truncated = raw_npy(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (4,)}", &[]);
        truncated.truncate(20);
        assert!(err(truncated).contains("header is truncated"));
        let short = err(raw_npy(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (4,)}", &[1, 2]));
        assert!(short.contains("promises 4 bytes") && short.contains("holds 2") && short.contains("short file"), "{short}");
        assert!(err(raw_npy(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (0,)}", &[])).contains("big-endian"));
        assert!(err(raw_npy(1, "{'descr': '<c8', 'fortran_order': False, 'shape': (0,)}", &[])).contains("`<c8` is not supported"));
        assert!(err(raw_npy(1, "{'descr': '|u1', 'fortran_order': True, 'shape': (0,)}", &[])).contains("Fortran"));
        assert!(err(raw_npy(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (0,)}", &[])).contains("structured"));
        assert!(err(raw_npy(1, "{'descr': '|u1', 'shape': (0,)}", &[])).contains("no `fortran_order` key"));
        assert!(err(raw_npy(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (0,)", &[])).contains("bad .npy header"));
        let floats = NpyArray::parse(raw_npy(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1,)}", &[0; 8])).unwrap();
        assert!(floats.to_labels().unwrap_err().contains("float64 are not supported"));
        assert!(floats.into_values().unwrap_err().contains("uint8 (0..255) or float32"));
    }
}
