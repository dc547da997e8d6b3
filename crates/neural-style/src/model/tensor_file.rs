//! The header of a `.safetensors` file (Hugging Face's format: an 8-byte little-endian
//! length, a JSON header naming each tensor's dtype, shape and byte range, then the data),
//! read and checked without the data, so that weights and checkpoints of gigabytes are read
//! tensor by tensor. The header is parsed by the `safetensors` crate.

use std::collections::HashMap;
use std::io::Read;

/// The longest header read: larger ones are damaged files, not networks.
const MAX_HEADER: u64 = 100 << 20;

/// One tensor of a file and where its bytes lie.
#[derive(Debug, Clone)]
pub struct TensorEntry {
    /// Its name in the header.
    pub name: String,
    /// Its element type.
    pub dtype: safetensors::Dtype,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its first byte, counted from the start of the file.
    pub start: u64,
    /// One past its last byte, counted from the start of the file.
    pub end: u64,
}

/// A file's header: its string metadata and its tensors in name order, each checked to
/// hold exactly the bytes its shape needs and to end inside the file.
#[derive(Debug, Clone)]
pub struct TensorFile {
    /// The `__metadata__` map (empty when the file has none).
    pub metadata: HashMap<String, String>,
    /// The tensors, in name order.
    pub tensors: Vec<TensorEntry>,
}

/// Why a header could not be read.
#[derive(Debug)]
pub enum HeaderError {
    /// The file could not be read.
    Io(std::io::Error),
    /// The bytes are not a well-formed header of a file this long; says what is wrong.
    Damaged(String),
}

/// Reads the header from the start of `file`, a file of `file_len` bytes.
pub fn read_header(file: &mut impl Read, file_len: u64) -> Result<TensorFile, HeaderError> {
    if file_len < 8 {
        return Err(HeaderError::Damaged(format!(
            "{file_len} bytes, shorter than a header"
        )));
    }
    let mut n8 = [0u8; 8];
    file.read_exact(&mut n8).map_err(HeaderError::Io)?;
    let n = u64::from_le_bytes(n8);
    if n > file_len - 8 || n > MAX_HEADER {
        return Err(HeaderError::Damaged(format!(
            "a header of {n} bytes in a file of {file_len} bytes"
        )));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header).map_err(HeaderError::Io)?;
    let meta: safetensors::tensor::Metadata = serde_json::from_slice(&header)
        .map_err(|e| HeaderError::Damaged(format!("the header is not valid: {e}")))?;
    let data_start = 8 + n;
    let mut tensors = Vec::new();
    for (name, info) in meta.tensors() {
        let (start, end) = (
            data_start.saturating_add(info.data_offsets.0 as u64),
            data_start.saturating_add(info.data_offsets.1 as u64),
        );
        let bytes = info
            .shape
            .iter()
            .try_fold(info.dtype.size(), |a, d| a.checked_mul(*d));
        if end < start || bytes != Some((end - start) as usize) {
            return Err(HeaderError::Damaged(format!(
                "tensor `{name}` has offsets that do not match its shape {:?}",
                info.shape
            )));
        }
        if end > file_len {
            return Err(HeaderError::Damaged(format!(
                "tensor `{name}` ends at byte {end} but the file has {file_len} bytes"
            )));
        }
        tensors.push(TensorEntry {
            name,
            dtype: info.dtype,
            shape: info.shape.clone(),
            start,
            end,
        });
    }
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(TensorFile {
        metadata: meta.metadata().clone().unwrap_or_default(),
        tensors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(tensors: &[(&str, Vec<usize>)]) -> Vec<u8> {
        let data: Vec<Vec<u8>> = tensors
            .iter()
            .map(|(_, s)| vec![0u8; 4 * s.iter().product::<usize>()])
            .collect();
        let views = tensors.iter().zip(&data).map(|((n, s), d)| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d);
            (n.to_string(), view.unwrap())
        });
        let meta = HashMap::from([("k".to_string(), "v".to_string())]);
        safetensors::serialize(views, &Some(meta)).unwrap()
    }

    #[test]
    fn reads_metadata_and_tensors_in_name_order_with_file_offsets() {
        let bytes = file(&[("b", vec![2, 3]), ("a", vec![4])]);
        let t = read_header(&mut bytes.as_slice(), bytes.len() as u64).unwrap();
        assert_eq!(t.metadata["k"], "v");
        let names: Vec<&str> = t.tensors.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(t.tensors[1].shape, [2, 3]);
        assert_eq!(t.tensors[1].end - t.tensors[1].start, 24);
        assert_eq!(
            t.tensors.iter().map(|e| e.end).max(),
            Some(bytes.len() as u64)
        );
    }

    #[test]
    fn a_truncated_file_is_damaged_and_says_where_the_tensor_ends() {
        let bytes = file(&[("a", vec![4])]);
        let cut = &bytes[..bytes.len() - 1];
        match read_header(&mut &cut[..], cut.len() as u64) {
            Err(HeaderError::Damaged(why)) => assert!(why.contains("tensor `a` ends"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_impossible_length_is_damaged() {
        let bytes = u64::MAX.to_le_bytes();
        assert!(matches!(
            read_header(&mut bytes.as_slice(), 8),
            Err(HeaderError::Damaged(_))
        ));
    }
}
