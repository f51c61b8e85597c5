//! Embeds the measure library (`<workspace>/measures/*.sql`).
fn main() {
    ariane_embed::embed_files("measures", "sql", false, ariane_embed::Names::FileName, "measure_files.rs");
}
