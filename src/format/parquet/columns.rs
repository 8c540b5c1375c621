//! Reading the columns of a row group with parquet's low-level column readers, without Arrow (whose
//! generic array code would triple the size of the wasm module): each leaf column is read whole —
//! values, definition and repetition levels — and turned into one value per row. Levels are
//! interpreted from the file's own schema, so files written by other Parquet writers (pyarrow's
//! nullable list items, other list element names) read the same way.

use parquet::basic::Encoding;
use parquet::basic::{Repetition, Type as PhysicalType};
use parquet::column::page::{Page, PageMetadata, PageReader};
use parquet::column::reader::{get_column_reader, get_typed_column_reader};
use parquet::data_type::DataType;
use parquet::file::reader::RowGroupReader;
use parquet::schema::types::{SchemaDescriptor, Type};

use crate::error::{AqError, Result};

fn perr(msg: impl Into<String>) -> AqError {
    AqError::Parquet(msg.into())
}

/// Where a leaf column sits: its index in the row group and its definition levels of interest.
#[derive(Debug, Clone, Copy)]
pub struct Leaf {
    pub index: usize,
    pub max_def: i16,
    pub max_rep: i16,
    /// For a leaf inside a list: the definition level at which the list itself is present
    /// (lower: the list, or a struct around it, is null).
    pub list_def: i16,
}

/// Find the leaf column at `path` (e.g. `["scales", "*", "*"]`, where `*` matches any name, as
/// list groups are named differently by different writers) with the physical type `physical`.
/// `None` when the file has no such column.
pub fn find_leaf(schema: &SchemaDescriptor, path: &[&str], physical: PhysicalType) -> Result<Option<Leaf>> {
    for (index, col) in schema.columns().iter().enumerate() {
        let parts = col.path().parts();
        let matches = parts.len() == path.len() && parts.iter().zip(path).all(|(p, want)| *want == "*" || p == want);
        if !matches {
            continue;
        }
        if col.physical_type() != physical {
            return Err(perr(format!(
                "column '{}' is {:?}, not the {physical:?} docs/FORMAT.md specifies",
                parts.join("."),
                col.physical_type()
            )));
        }
        let list_def = list_def(schema.root_schema(), parts);
        return Ok(Some(Leaf { index, max_def: col.max_def_level(), max_rep: col.max_rep_level(), list_def }));
    }
    Ok(None)
}

/// The definition level at which a list on `path` is present: the optional nodes above its
/// repeated group (for a column outside any list, all optional nodes on the path).
fn list_def(root: &Type, path: &[String]) -> i16 {
    let mut def = 0;
    let mut node = root;
    for name in path {
        let Some(child) = node.get_fields().iter().find(|f| f.name() == name) else { break };
        let info = child.get_basic_info();
        if info.has_repetition() {
            match info.repetition() {
                Repetition::OPTIONAL => def += 1,
                Repetition::REPEATED => return def,
                Repetition::REQUIRED => {}
            }
        }
        node = child;
    }
    def
}

/// One leaf column of a row group, read whole.
pub struct Column<T> {
    pub leaf: Leaf,
    pub values: Vec<T>,
    pub def: Vec<i16>,
    pub rep: Vec<i16>,
    name: String,
}

/// Read every value and level of `leaf` in row group `rg`, which holds `rows` rows.
pub fn read<D: DataType>(rg: &dyn RowGroupReader, leaf: Leaf, rows: usize) -> Result<Column<D::T>> {
    let name = rg.metadata().column(leaf.index).column_path().string();
    let column = rg.metadata().column(leaf.index);
    let column_reader = if column.column_type() == parquet::basic::Type::BYTE_ARRAY {
        // Decompressed once: the pages are checked, then handed to the decoder.
        let pages = rg.get_column_page_reader(leaf.index)?.collect::<parquet::errors::Result<Vec<Page>>>()?;
        for page in &pages {
            check_byte_array_page(page, leaf, &name)?;
        }
        get_column_reader(column.column_descr_ptr(), Box::new(PagesInMemory(pages.into_iter().peekable())))
    } else {
        rg.get_column_reader(leaf.index)?
    };
    let mut reader = get_typed_column_reader::<D>(column_reader);
    let (mut values, mut def, mut rep) = (Vec::new(), Vec::new(), Vec::new());
    let mut got = 0;
    while got < rows {
        let (records, _, _) = reader.read_records(rows - got, Some(&mut def), Some(&mut rep), &mut values)?;
        if records == 0 {
            break;
        }
        got += records;
    }
    if got != rows {
        return Err(perr(format!("column '{name}' holds {got} rows, the row group {rows}")));
    }
    Ok(Column { leaf, values, def, rep, name })
}

impl<T: Clone> Column<T> {
    /// A required, unrepeated column: one value per row.
    pub fn required(self, rows: usize) -> Result<Vec<T>> {
        if self.leaf.max_rep != 0 || self.values.len() != rows {
            return Err(perr(format!("column '{}' is not one value per row", self.name)));
        }
        Ok(self.values)
    }

    /// An unrepeated column that may be null (alone or through a null struct around it).
    pub fn optional(self, rows: usize) -> Result<Vec<Option<T>>> {
        if self.leaf.max_rep != 0 {
            return Err(perr(format!("column '{}' is repeated; docs/FORMAT.md says it is not", self.name)));
        }
        if self.leaf.max_def == 0 {
            return self.required(rows).map(|v| v.into_iter().map(Some).collect());
        }
        let mut values = self.values.into_iter();
        let out: Vec<Option<T>> =
            self.def.iter().map(|&d| if d == self.leaf.max_def { values.next() } else { None }).collect();
        if out.len() != rows || values.next().is_some() {
            return Err(perr(format!("column '{}' has levels that do not match its values", self.name)));
        }
        Ok(out)
    }

    /// A list column: per row `None` (the list or a struct around it is null) or its items. A
    /// null item (possible only in files of other writers) is an error.
    pub fn lists(self, rows: usize) -> Result<Vec<Option<Vec<T>>>> {
        let Leaf { max_def, max_rep, list_def, .. } = self.leaf;
        if max_rep != 1 || self.def.len() != self.rep.len() {
            return Err(perr(format!("column '{}' is not a list", self.name)));
        }
        let mut out: Vec<Option<Vec<T>>> = Vec::with_capacity(rows);
        let mut values = self.values.into_iter();
        for (&d, &r) in self.def.iter().zip(&self.rep) {
            if out.is_empty() && r != 0 {
                return Err(perr(format!("column '{}' starts inside a list", self.name)));
            }
            if r == 0 {
                out.push((d >= list_def).then(Vec::new));
            }
            let Some(Some(row)) = out.last_mut() else { continue };
            if d == max_def {
                row.push(values.next().ok_or_else(|| perr(format!("column '{}' ends early", self.name)))?);
            } else if d > list_def {
                return Err(perr(format!("column '{}' has a null item", self.name)));
            }
        }
        if out.len() != rows || values.next().is_some() {
            return Err(perr(format!("column '{}' has levels that do not match its values", self.name)));
        }
        Ok(out)
    }
}

/// Walk a BYTE_ARRAY page's PLAIN values before the Parquet decoder does: parquet-rs panics (a
/// trap in wasm) on a value whose length prefix runs past its page. PLAIN values fill the page
/// after its levels, so (u32 length, bytes) items must tile the rest exactly; a required column's
/// page must hold `num_values` of them. Pages of other encodings, and v1 levels in the deprecated
/// BIT_PACKED encoding (no length prefix), are left to the decoder.
fn check_byte_array_page(page: &Page, leaf: Leaf, name: &str) -> Result<()> {
    let bad = |what: String| perr(format!("column '{name}': {what} (damaged file)"));
    let (buf, values_at, num_values) = match page {
        Page::DataPage {
            buf, num_values, encoding: Encoding::PLAIN, def_level_encoding, rep_level_encoding, ..
        } => {
            // v1 RLE levels: a u32 byte length, then the runs; repetition levels first.
            let mut at = 0usize;
            for (max, encoding) in [(leaf.max_rep, rep_level_encoding), (leaf.max_def, def_level_encoding)] {
                if max == 0 {
                    continue;
                }
                if *encoding != Encoding::RLE {
                    return Ok(());
                }
                let len = buf.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize);
                at = len
                    .and_then(|len| at.checked_add(4 + len))
                    .filter(|&end| end <= buf.len())
                    .ok_or_else(|| bad("a page's levels run past its end".to_string()))?;
            }
            (buf, at, *num_values)
        }
        Page::DataPageV2 {
            buf,
            num_values,
            encoding: Encoding::PLAIN,
            def_levels_byte_len,
            rep_levels_byte_len,
            ..
        } => {
            let at = (*def_levels_byte_len as usize).saturating_add(*rep_levels_byte_len as usize);
            if at > buf.len() {
                return Err(bad("a page's levels run past its end".to_string()));
            }
            (buf, at, *num_values)
        }
        Page::DictionaryPage { buf, num_values, .. } => (buf, 0, *num_values),
        _ => return Ok(()),
    };
    let mut at = values_at;
    let mut count = 0u64;
    while at < buf.len() {
        let Some(len) = buf.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize) else {
            return Err(bad(format!("a page ends inside the length of value {count}")));
        };
        at = at
            .checked_add(4 + len)
            .filter(|&end| end <= buf.len())
            .ok_or_else(|| bad(format!("value {count} ({len} bytes) runs past its page")))?;
        count += 1;
    }
    let required = leaf.max_def == 0 && leaf.max_rep == 0;
    let is_dictionary = matches!(page, Page::DictionaryPage { .. });
    if (required || is_dictionary) && count != u64::from(num_values) {
        return Err(bad(format!("a page holds {count} values but says {num_values}")));
    }
    Ok(())
}

/// Pages already read (and checked), as the column reader's page source.
struct PagesInMemory(std::iter::Peekable<std::vec::IntoIter<Page>>);

impl Iterator for PagesInMemory {
    type Item = parquet::errors::Result<Page>;
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(Ok)
    }
}

impl PageReader for PagesInMemory {
    fn get_next_page(&mut self) -> parquet::errors::Result<Option<Page>> {
        Ok(self.0.next())
    }

    fn peek_next_page(&mut self) -> parquet::errors::Result<Option<PageMetadata>> {
        Ok(self.0.peek().map(|page| match page {
            Page::DataPage { num_values, .. } => {
                PageMetadata { num_rows: None, num_levels: Some(*num_values as usize), is_dict: false }
            }
            Page::DataPageV2 { num_rows, num_values, .. } => PageMetadata {
                num_rows: Some(*num_rows as usize),
                num_levels: Some(*num_values as usize),
                is_dict: false,
            },
            Page::DictionaryPage { .. } => PageMetadata { num_rows: None, num_levels: None, is_dict: true },
        }))
    }

    fn skip_next_page(&mut self) -> parquet::errors::Result<()> {
        self.0.next();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn page(buf: Vec<u8>, num_values: u32, def: Encoding) -> Page {
        Page::DataPage {
            buf: Bytes::from(buf),
            num_values,
            encoding: Encoding::PLAIN,
            def_level_encoding: def,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        }
    }

    fn item(bytes: &[u8]) -> Vec<u8> {
        let mut v = (bytes.len() as u32).to_le_bytes().to_vec();
        v.extend_from_slice(bytes);
        v
    }

    #[test]
    #[allow(deprecated)] // BIT_PACKED: the legacy level encoding other writers may still use
    fn byte_array_values_must_tile_their_page() {
        let required = Leaf { index: 0, max_def: 0, max_rep: 0, list_def: 0 };
        let two = [item(b"ab"), item(b"")].concat();
        check_byte_array_page(&page(two.clone(), 2, Encoding::RLE), required, "c").unwrap();
        for (buf, n, why) in [
            (two.clone(), 3, "says 3"),
            ([two.clone(), vec![1, 0]].concat(), 2, "inside the length"),
            ([item(b"ab"), vec![9, 0, 0, 0, 1]].concat(), 2, "runs past"),
            ([vec![0xff, 0xff, 0xff, 0xff]].concat(), 1, "runs past"),
        ] {
            let e = check_byte_array_page(&page(buf, n, Encoding::RLE), required, "c").unwrap_err().to_string();
            assert!(e.contains(why) && e.contains("'c'"), "{e}");
        }
        // A nullable column: definition levels (u32 length + runs) in front, fewer values than levels.
        let nullable = Leaf { max_def: 1, ..required };
        let with_levels = [vec![2, 0, 0, 0, 4, 1], item(b"x")].concat();
        check_byte_array_page(&page(with_levels, 2, Encoding::RLE), nullable, "c").unwrap();
        let e = check_byte_array_page(&page(vec![200, 0, 0, 0, 4, 1], 2, Encoding::RLE), nullable, "c").unwrap_err();
        assert!(e.to_string().contains("levels"), "{e}");
        // BIT_PACKED levels carry no length: left to the decoder.
        check_byte_array_page(&page(vec![1, 2, 3], 2, Encoding::BIT_PACKED), nullable, "c").unwrap();
    }
}
