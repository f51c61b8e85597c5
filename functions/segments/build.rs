//! Embeds the segment library (`<workspace>/segments/*.sql`).
fn main() {
    ariane_embed::embed_files("segments", "sql", false, ariane_embed::Names::FileName, "segment_files.rs");
}
