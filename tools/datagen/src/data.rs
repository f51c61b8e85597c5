//! Static reference data: French first and last names, cities with their
//! postal codes, e-mail providers and the e-shop product catalogue.
//!
//! The tables are part of the generator's output contract: editing, adding or
//! reordering entries changes every generated file for a given seed.

/// French first names (mixed genders, with the usual accents and hyphens).
pub(crate) const FIRST_NAMES: &[&str] = &[
    "Marie",
    "Jean",
    "Camille",
    "Nicolas",
    "Léa",
    "Thomas",
    "Chloé",
    "Julien",
    "Manon",
    "Pierre",
    "Inès",
    "Antoine",
    "Sarah",
    "Alexandre",
    "Emma",
    "Hugo",
    "Zoé",
    "Lucas",
    "Clémence",
    "Louis",
    "Bérénice",
    "François",
    "Hélène",
    "Gaëlle",
    "Jérôme",
    "Céline",
    "Frédéric",
    "Amélie",
    "Stéphane",
    "Élodie",
    "Loïc",
    "Anaïs",
    "Benoît",
    "Noémie",
    "Raphaël",
    "Maëlle",
    "Clément",
    "Aurélie",
    "Gaëtan",
    "Séverine",
    "Mathéo",
    "Océane",
    "Joël",
    "Cécile",
    "Noël",
    "Valérie",
    "Théo",
    "Mélanie",
    "Jean-François",
    "Marie-Claire",
    "Jean-Pierre",
    "Anne-Sophie",
    "Étienne",
    "Thérèse",
    "André",
    "Agnès",
    "Rémi",
    "Léonie",
    "Maxime",
    "Juliette",
    "Guillaume",
    "Charlotte",
    "Romain",
    "Pauline",
    "Sébastien",
    "Margaux",
    "Vincent",
    "Laure",
    "Olivier",
    "Isabelle",
    "Arnaud",
    "Sophie",
    "Cédric",
    "Nathalie",
    "Damien",
    "Sandrine",
    "Mathieu",
    "Aurore",
    "Quentin",
    "Lucie",
    "Adrien",
    "Justine",
    "Baptiste",
    "Émilie",
    "Florian",
    "Laëtitia",
    "Yannick",
    "Coralie",
    "Grégoire",
    "Solène",
    "Mickaël",
    "Ophélie",
    "Régis",
    "Capucine",
    "Hervé",
    "Victoire",
    "Timothée",
    "Héloïse",
    "Gérard",
    "Françoise",
    "Yves",
    "Ségolène",
];

/// French last names (frequent names plus a few with accents, particles and apostrophes).
pub(crate) const LAST_NAMES: &[&str] = &[
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
    "Lefèvre",
    "Michel",
    "Garcia",
    "David",
    "Bertrand",
    "Roux",
    "Vincent",
    "Fournier",
    "Morel",
    "Girard",
    "André",
    "Lefebvre",
    "Mercier",
    "Dupont",
    "Lambert",
    "Bonnet",
    "François",
    "Martinez",
    "Legrand",
    "Garnier",
    "Faure",
    "Rousseau",
    "Blanc",
    "Guérin",
    "Muller",
    "Henry",
    "Roussel",
    "Nicolas",
    "Perrin",
    "Morin",
    "Mathieu",
    "Clément",
    "Gauthier",
    "Dumont",
    "Lopez",
    "Fontaine",
    "Chevalier",
    "Robin",
    "Masson",
    "Sanchez",
    "Gérard",
    "Nguyen",
    "Boyer",
    "Denis",
    "Lemaire",
    "Duval",
    "Joly",
    "Gautier",
    "Roger",
    "Roche",
    "Roy",
    "Noël",
    "Meyer",
    "Lucas",
    "Meunier",
    "Pérez",
    "Marchand",
    "Dufour",
    "Blanchard",
    "Barbier",
    "Brun",
    "Dumas",
    "Brunet",
    "Schmitt",
    "Leroux",
    "Colin",
    "Fernandez",
    "Renard",
    "Arnaud",
    "Caron",
    "Aubert",
    "Giraud",
    "Leclerc",
    "Vidal",
    "Bourgeois",
    "Renaud",
    "Lemoine",
    "Picard",
    "Gaillard",
    "Lacroix",
    "Fabre",
    "Dupuis",
    "Rivière",
    "Le Gall",
    "Le Goff",
    "Da Silva",
    "Lemaître",
    "Bénard",
    "Hérault",
    "Crépin",
    "N'Diaye",
    "Béranger",
    "Delacroix",
    "Lebœuf",
];

/// A city, its postal codes (5 digits, leading zero preserved) and a
/// relative weight roughly proportional to its population.
pub(crate) struct City {
    pub name: &'static str,
    pub postal_codes: &'static [&'static str],
    pub weight: u32,
}

/// French cities used for billing addresses.
pub(crate) const CITIES: &[City] = &[
    City {
        name: "Paris",
        postal_codes: &[
            "75001", "75002", "75003", "75004", "75005", "75006", "75007", "75008", "75009", "75010", "75011", "75012", "75013", "75014",
            "75015", "75016", "75017", "75018", "75019", "75020",
        ],
        weight: 210,
    },
    City {
        name: "Marseille",
        postal_codes: &[
            "13001", "13002", "13003", "13004", "13005", "13006", "13007", "13008", "13009", "13010", "13011", "13012", "13013", "13014",
            "13015", "13016",
        ],
        weight: 87,
    },
    City { name: "Lyon", postal_codes: &["69001", "69002", "69003", "69004", "69005", "69006", "69007", "69008", "69009"], weight: 52 },
    City { name: "Toulouse", postal_codes: &["31000", "31100", "31200", "31300", "31400", "31500"], weight: 50 },
    City { name: "Nice", postal_codes: &["06000", "06100", "06200", "06300"], weight: 34 },
    City { name: "Nantes", postal_codes: &["44000", "44100", "44200", "44300"], weight: 32 },
    City { name: "Montpellier", postal_codes: &["34000", "34070", "34080", "34090"], weight: 30 },
    City { name: "Strasbourg", postal_codes: &["67000", "67100", "67200"], weight: 29 },
    City { name: "Bordeaux", postal_codes: &["33000", "33100", "33200", "33300", "33800"], weight: 26 },
    City { name: "Lille", postal_codes: &["59000", "59160", "59260", "59800"], weight: 24 },
    City { name: "Rennes", postal_codes: &["35000", "35200", "35700"], weight: 22 },
    City { name: "Reims", postal_codes: &["51100"], weight: 18 },
    City { name: "Toulon", postal_codes: &["83000", "83100", "83200"], weight: 18 },
    City { name: "Saint-Étienne", postal_codes: &["42000", "42100"], weight: 17 },
    City { name: "Le Havre", postal_codes: &["76600", "76610", "76620"], weight: 17 },
    City { name: "Grenoble", postal_codes: &["38000", "38100"], weight: 16 },
    City { name: "Dijon", postal_codes: &["21000"], weight: 16 },
    City { name: "Angers", postal_codes: &["49000", "49100"], weight: 15 },
    City { name: "Villeurbanne", postal_codes: &["69100"], weight: 15 },
    City { name: "Nîmes", postal_codes: &["30000", "30900"], weight: 15 },
    City { name: "Clermont-Ferrand", postal_codes: &["63000", "63100"], weight: 15 },
    City { name: "Aix-en-Provence", postal_codes: &["13090", "13100"], weight: 14 },
    City { name: "Le Mans", postal_codes: &["72000", "72100"], weight: 14 },
    City { name: "Brest", postal_codes: &["29200"], weight: 14 },
    City { name: "Tours", postal_codes: &["37000", "37100", "37200"], weight: 14 },
    City { name: "Amiens", postal_codes: &["80000", "80080", "80090"], weight: 13 },
    City { name: "Limoges", postal_codes: &["87000", "87100", "87280"], weight: 13 },
    City { name: "Annecy", postal_codes: &["74000"], weight: 13 },
    City { name: "Perpignan", postal_codes: &["66000", "66100"], weight: 12 },
    City { name: "Boulogne-Billancourt", postal_codes: &["92100"], weight: 12 },
    City { name: "Metz", postal_codes: &["57000", "57050", "57070"], weight: 12 },
    City { name: "Besançon", postal_codes: &["25000"], weight: 12 },
    City { name: "Orléans", postal_codes: &["45000", "45100"], weight: 12 },
    City { name: "Rouen", postal_codes: &["76000", "76100"], weight: 11 },
    City { name: "Saint-Denis", postal_codes: &["93200"], weight: 11 },
    City { name: "Montreuil", postal_codes: &["93100"], weight: 11 },
    City { name: "Caen", postal_codes: &["14000"], weight: 11 },
    City { name: "Nancy", postal_codes: &["54000", "54100"], weight: 10 },
    City { name: "Argenteuil", postal_codes: &["95100"], weight: 10 },
    City { name: "Mulhouse", postal_codes: &["68100", "68200"], weight: 10 },
    City { name: "Nanterre", postal_codes: &["92000"], weight: 9 },
    City { name: "Vitry-sur-Seine", postal_codes: &["94400"], weight: 9 },
    City { name: "Créteil", postal_codes: &["94000"], weight: 9 },
    City { name: "Avignon", postal_codes: &["84000"], weight: 9 },
    City { name: "Poitiers", postal_codes: &["86000"], weight: 9 },
    City { name: "Versailles", postal_codes: &["78000"], weight: 8 },
    City { name: "Pau", postal_codes: &["64000"], weight: 8 },
    City { name: "La Rochelle", postal_codes: &["17000"], weight: 8 },
    City { name: "Cannes", postal_codes: &["06150", "06400"], weight: 7 },
    City { name: "Antibes", postal_codes: &["06600"], weight: 7 },
    City { name: "Colmar", postal_codes: &["68000"], weight: 7 },
    City { name: "Ajaccio", postal_codes: &["20000", "20090"], weight: 7 },
    City { name: "Bayonne", postal_codes: &["64100"], weight: 5 },
    City { name: "Chambéry", postal_codes: &["73000"], weight: 6 },
    City { name: "Valence", postal_codes: &["26000"], weight: 6 },
    City { name: "Quimper", postal_codes: &["29000"], weight: 6 },
    City { name: "Vannes", postal_codes: &["56000"], weight: 5 },
    City { name: "Lorient", postal_codes: &["56100"], weight: 5 },
    City { name: "Saint-Malo", postal_codes: &["35400"], weight: 5 },
    City { name: "Troyes", postal_codes: &["10000"], weight: 6 },
    City { name: "Bourg-en-Bresse", postal_codes: &["01000"], weight: 4 },
    City { name: "Laon", postal_codes: &["02000"], weight: 2 },
];

/// E-mail providers popular in France, with relative weights.
pub(crate) const EMAIL_PROVIDERS: &[(&str, u32)] = &[
    ("gmail.com", 30),
    ("orange.fr", 15),
    ("hotmail.fr", 12),
    ("free.fr", 10),
    ("yahoo.fr", 8),
    ("laposte.net", 7),
    ("sfr.fr", 6),
    ("outlook.fr", 6),
    ("wanadoo.fr", 4),
    ("icloud.com", 2),
];

/// Product category codes used in the `Lineitem category` column.
pub(crate) const CATEGORIES: &[&str] = &["vetements", "chaussures", "accessoires", "maison", "beaute", "sport", "enfant"];

/// One catalogue product with a stable SKU, category and unit price, in one
/// range of its category at one tier.
pub(crate) struct Product {
    pub sku: &'static str,
    pub name: &'static str,
    /// Index into [`CATEGORIES`].
    pub category: usize,
    pub price_cents: u64,
    /// The product range (gamme) within the category: products a customer would
    /// trade up between (a T-shirt, a marinière and a merino jumper are the
    /// `basiques` of `vetements`). Range names are unique within a category.
    pub range: &'static str,
    pub tier: Tier,
}

/// The tier of a product within its range, by price band: within a range,
/// every product of a higher tier costs more than every product of a lower
/// one (the catalogue's tests check it). A range need not have every tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    Entry,
    Mid,
    Premium,
}

impl Tier {
    /// Every tier, lowest first.
    pub const ALL: [Tier; 3] = [Tier::Entry, Tier::Mid, Tier::Premium];

    /// The tier's name: `entry`, `mid`, `premium`.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Entry => "entry",
            Tier::Mid => "mid",
            Tier::Premium => "premium",
        }
    }
}

/// One product of the catalogue every export sells from (the e-shop's order
/// lines, the tills' receipt lines, the app's purchases, web product views),
/// as a consumer of the generator's ground truth sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CatalogueProduct {
    /// As written in every export (`Lineitem sku`, `Code article`, ...).
    pub sku: &'static str,
    pub name: &'static str,
    /// The category slug of the e-shop export (`vetements`; the tills write the
    /// department's label, `Vêtements`, instead).
    pub category: &'static str,
    pub range: &'static str,
    pub tier: Tier,
    /// Unit price in cents, the same in every channel.
    pub price_cents: u64,
}

/// The whole catalogue, in a fixed order (by category, then as listed).
pub fn catalogue() -> Vec<CatalogueProduct> {
    PRODUCTS
        .iter()
        .map(|p| CatalogueProduct {
            sku: p.sku,
            name: p.name,
            category: CATEGORIES[p.category],
            range: p.range,
            tier: p.tier,
            price_cents: p.price_cents,
        })
        .collect()
}

const VET: usize = 0;
const CHA: usize = 1;
const ACC: usize = 2;
const MAI: usize = 3;
const BEA: usize = 4;
const SPO: usize = 5;
const ENF: usize = 6;

const ENTRY: Tier = Tier::Entry;
const MID: Tier = Tier::Mid;
const PREMIUM: Tier = Tier::Premium;

const fn p(sku: &'static str, name: &'static str, category: usize, price_cents: u64, range: &'static str, tier: Tier) -> Product {
    Product { sku, name, category, price_cents, range, tier }
}

/// The fixed e-shop catalogue (61 products in 18 ranges). Several names contain
/// commas or double quotes so that CSV quoting is exercised. SKUs, names,
/// categories and prices are what every export has always written (the ranges
/// and tiers were added without changing them, so the generated exports are
/// unchanged); `segments/up-sell.sql` carries the same ranges and tiers.
pub(crate) const PRODUCTS: &[Product] = &[
    p("SKU-VET-00123", "Pull col roulé, laine mérinos", VET, 6990, "basiques", PREMIUM),
    p("SKU-VET-00124", "T-shirt coton bio blanc", VET, 1990, "basiques", ENTRY),
    p("SKU-VET-00131", "Jean droit brut", VET, 5990, "ville", PREMIUM),
    p("SKU-VET-00138", "Chemise en lin, manches longues", VET, 4990, "ville", MID),
    p("SKU-VET-00142", "Robe portefeuille fleurie", VET, 5490, "ville", MID),
    p("SKU-VET-00157", "Veste en jean délavé", VET, 7990, "manteaux", ENTRY),
    p("SKU-VET-00163", "Sweat à capuche gris chiné", VET, 4490, "basiques", MID),
    p("SKU-VET-00171", "Pantalon chino beige", VET, 4990, "ville", MID),
    p("SKU-VET-00186", "Manteau en laine, coupe droite", VET, 14900, "manteaux", PREMIUM),
    p("SKU-VET-00192", "Marinière rayée bleu/blanc", VET, 3990, "basiques", MID),
    p("SKU-VET-00205", "Jupe plissée midi", VET, 4500, "ville", ENTRY),
    p("SKU-VET-00218", "Doudoune légère sans manches", VET, 8990, "manteaux", MID),
    p("SKU-CHA-00311", "Baskets en cuir blanc", CHA, 8990, "baskets", ENTRY),
    p("SKU-CHA-00317", "Bottines à talon, daim camel", CHA, 11900, "ville", PREMIUM),
    p("SKU-CHA-00324", "Espadrilles en toile", CHA, 2990, "detente", ENTRY),
    p("SKU-CHA-00336", "Mocassins en cuir, semelle gomme", CHA, 9900, "ville", ENTRY),
    p("SKU-CHA-00342", "Sandales tressées", CHA, 4990, "detente", MID),
    p("SKU-CHA-00355", "Charentaises « tradition »", CHA, 3490, "detente", ENTRY),
    p("SKU-CHA-00361", "Derbies cuir noir", CHA, 10900, "ville", MID),
    p("SKU-CHA-00378", "Chaussures de running, amorti renforcé", CHA, 9990, "baskets", PREMIUM),
    p("SKU-ACC-00402", "Écharpe en cachemire", ACC, 7900, "echarpes", PREMIUM),
    p("SKU-ACC-00415", "Ceinture cuir, boucle dorée", ACC, 3500, "maroquinerie", MID),
    p("SKU-ACC-00421", "Sac cabas en toile", ACC, 3990, "maroquinerie", MID),
    p("SKU-ACC-00433", "Bonnet côtelé", ACC, 1990, "echarpes", ENTRY),
    p("SKU-ACC-00447", "Lunettes de soleil, monture écaille", ACC, 5900, "montres-lunettes", MID),
    p("SKU-ACC-00452", "Portefeuille en cuir", ACC, 4500, "maroquinerie", PREMIUM),
    p("SKU-ACC-00468", "Foulard en soie imprimé", ACC, 4900, "echarpes", MID),
    p("SKU-ACC-00474", "Tote bag \"Paris je t'aime\"", ACC, 1500, "maroquinerie", ENTRY),
    p("SKU-ACC-00489", "Montre acier, bracelet milanais", ACC, 12900, "montres-lunettes", PREMIUM),
    p("SKU-MAI-00503", "Bougie parfumée figue", MAI, 2490, "deco", ENTRY),
    p("SKU-MAI-00516", "Plaid en laine, 130x170 cm", MAI, 6900, "linge", MID),
    p("SKU-MAI-00522", "Mug en grès émaillé", MAI, 1290, "cuisine", ENTRY),
    p("SKU-MAI-00537", "Coussin lin lavé", MAI, 2990, "linge", ENTRY),
    p("SKU-MAI-00541", "Parure de lit percale, 240x220", MAI, 11900, "linge", PREMIUM),
    p("SKU-MAI-00558", "Vase en verre soufflé", MAI, 3900, "deco", MID),
    p("SKU-MAI-00563", "Torchons en lin (lot de 3)", MAI, 1990, "cuisine", ENTRY),
    p("SKU-MAI-00579", "Diffuseur d'huiles essentielles", MAI, 4490, "deco", PREMIUM),
    p("SKU-MAI-00584", "Tablier de cuisine", MAI, 2200, "cuisine", MID),
    p("SKU-BEA-00605", "Savon de Marseille à l'huile d'olive", BEA, 490, "soin", ENTRY),
    p("SKU-BEA-00612", "Crème hydratante visage, 50 ml", BEA, 2450, "soin", MID),
    p("SKU-BEA-00628", "Eau de toilette fleur d'oranger", BEA, 3900, "maquillage", PREMIUM),
    p("SKU-BEA-00634", "Baume à lèvres", BEA, 690, "maquillage", ENTRY),
    p("SKU-BEA-00641", "Shampoing solide", BEA, 990, "soin", ENTRY),
    p("SKU-BEA-00657", "Huile sèche corps et cheveux", BEA, 1990, "soin", MID),
    p("SKU-BEA-00663", "Rouge à lèvres mat", BEA, 1690, "maquillage", MID),
    p("SKU-BEA-00679", "Coffret soin, édition Noël", BEA, 4900, "soin", PREMIUM),
    p("SKU-SPO-00704", "Tapis de yoga, 6 mm", SPO, 3490, "fitness", PREMIUM),
    p("SKU-SPO-00718", "Legging de sport taille haute", SPO, 3990, "fitness", PREMIUM),
    p("SKU-SPO-00725", "Gourde isotherme 750 ml", SPO, 2490, "fitness", ENTRY),
    p("SKU-SPO-00733", "Brassière de sport", SPO, 2990, "fitness", MID),
    p("SKU-SPO-00746", "Short de running", SPO, 2490, "plein-air", MID),
    p("SKU-SPO-00752", "Coupe-vent léger, déperlant", SPO, 5990, "plein-air", PREMIUM),
    p("SKU-SPO-00769", "Haltères néoprène (paire)", SPO, 2990, "fitness", MID),
    p("SKU-SPO-00771", "Chaussettes de randonnée", SPO, 1490, "plein-air", ENTRY),
    p("SKU-ENF-00806", "Body bébé coton bio, lot de 2", ENF, 1990, "bebe", ENTRY),
    p("SKU-ENF-00813", "Pyjama enfant étoiles", ENF, 2290, "junior", ENTRY),
    p("SKU-ENF-00827", "Doudou lapin", ENF, 2490, "bebe", MID),
    p("SKU-ENF-00832", "Ciré enfant jaune", ENF, 3990, "junior", PREMIUM),
    p("SKU-ENF-00848", "Cartable maternelle", ENF, 3490, "junior", MID),
    p("SKU-ENF-00851", "Chaussons bébé en cuir", ENF, 1990, "bebe", ENTRY),
    p("SKU-ENF-00869", "Sweat enfant à capuche", ENF, 2790, "junior", ENTRY),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet, HashSet};

    #[test]
    fn tables_are_consistent() {
        assert!(FIRST_NAMES.len() >= 100, "{}", FIRST_NAMES.len());
        assert!(LAST_NAMES.len() >= 100, "{}", LAST_NAMES.len());
        assert_eq!(FIRST_NAMES.iter().collect::<HashSet<_>>().len(), FIRST_NAMES.len());
        assert_eq!(LAST_NAMES.iter().collect::<HashSet<_>>().len(), LAST_NAMES.len());
        for city in CITIES {
            assert!(!city.postal_codes.is_empty() && city.weight > 0, "{}", city.name);
            for pc in city.postal_codes {
                assert!(pc.len() == 5 && pc.bytes().all(|b| b.is_ascii_digit()), "{pc}");
            }
        }
        let skus: HashSet<_> = PRODUCTS.iter().map(|p| p.sku).collect();
        assert_eq!(skus.len(), PRODUCTS.len());
        for product in PRODUCTS {
            let prefix = &CATEGORIES[product.category][..3].to_ascii_uppercase();
            assert!(product.sku.starts_with(&format!("SKU-{prefix}-")), "{}", product.sku);
            assert!(product.price_cents > 0);
        }
        assert!(PRODUCTS.iter().any(|p| p.name.contains(',')));
        assert!(PRODUCTS.iter().any(|p| p.name.contains('"')));
    }

    #[test]
    fn tiers_are_price_bands_within_each_range() {
        let mut ranges: BTreeMap<(usize, &str), Vec<&Product>> = BTreeMap::new();
        for product in PRODUCTS {
            assert!(
                !product.range.is_empty() && product.range.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "range of {}: {:?}",
                product.sku,
                product.range
            );
            ranges.entry((product.category, product.range)).or_default().push(product);
        }
        assert_eq!(ranges.len(), 18);
        for ((category, range), products) in &ranges {
            let tiers: BTreeSet<Tier> = products.iter().map(|p| p.tier).collect();
            assert!(tiers.len() >= 2, "{}/{range} has one tier: nothing to trade up to", CATEGORIES[*category]);
            for a in products {
                for b in products.iter().filter(|b| b.tier > a.tier) {
                    assert!(a.price_cents < b.price_cents, "{} ({:?}) costs at least {} ({:?})", a.sku, a.tier, b.sku, b.tier);
                }
            }
        }
        // The cases the up-sell segment must handle: a tier missing between two others
        // (entry to premium), a range without entry, ties on the price in a tier.
        let has = |c: usize, r: &str, t: Tier| ranges[&(c, r)].iter().any(|p| p.tier == t);
        assert!(has(CHA, "baskets", Tier::Entry) && !has(CHA, "baskets", Tier::Mid) && has(CHA, "baskets", Tier::Premium));
        assert!(!has(ACC, "montres-lunettes", Tier::Entry));
        let mid_fitness: Vec<u64> = ranges[&(SPO, "fitness")].iter().filter(|p| p.tier == Tier::Mid).map(|p| p.price_cents).collect();
        assert_eq!(mid_fitness, [2990, 2990]);
    }

    #[test]
    fn the_public_catalogue_is_the_table() {
        let c = catalogue();
        assert_eq!(c.len(), PRODUCTS.len());
        let jumper = c.iter().find(|p| p.sku == "SKU-VET-00123").unwrap();
        assert_eq!((jumper.category, jumper.range, jumper.tier, jumper.price_cents), ("vetements", "basiques", Tier::Premium, 6990));
        assert_eq!(Tier::ALL.map(Tier::name), ["entry", "mid", "premium"]);
    }
}
