//! [`Arch`] and [`Checksum`] in SQLite (feature `sql`, for the CI history): stored as text, read back
//! strictly (an unknown architecture is an error).

use crate::{Arch, Checksum};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

impl ToSql for Arch {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl FromSql for Arch {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        v.as_str()?.parse().map_err(|e: String| FromSqlError::Other(e.into()))
    }
}

impl ToSql for Checksum {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl FromSql for Checksum {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        Ok(Checksum::new(v.as_str()?))
    }
}
