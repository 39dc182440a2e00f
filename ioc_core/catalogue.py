"""The IOC's open data as a DCAT-AP 3 catalogue, so open-data portals (CKAN's ckanext-dcat,
data.europa.eu-style harvesters, Vietnam's DCAT-VN draft) can harvest it.

``build_catalogue`` is a pure function of what the database says is there (``Holdings``) and of
the host the catalogue was asked on: every link is made from that base, so the links work behind
any host or proxy. Datasets: each sensor kind's hourly readings, and, once they hold data, the CAP
feed of public alerts, the units' response times and the civic sprint; the NGSI-LD API is its data
service. Controlled values come from the vocabularies harvesters map (EU data themes, frequencies,
file types, languages, access rights; ADMS publisher types; IANA media types).

Every node is typed with the class the DCAT-AP shapes name (``rdfs:Resource`` for a link,
``vcard:Kind`` beside ``vcard:Organization``...), so the shapes hold without any inference::

    graph = build_catalogue("https://ioc.example/", holdings, Publisher("ioc@example.org", CC_BY))
    graph.serialize(format="turtle")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from rdflib import BNode, Graph, Literal, Namespace, URIRef
from rdflib.namespace import DCAT, DCTERMS, FOAF, RDF, RDFS, SKOS, XSD

ADMS = Namespace("http://www.w3.org/ns/adms#")
VCARD = Namespace("http://www.w3.org/2006/vcard/ns#")
GEO = Namespace("http://www.opengis.net/ont/geosparql#")
AUTHORITY = "http://publications.europa.eu/resource/authority/"
THEME = Namespace(AUTHORITY + "data-theme/")
FREQUENCY = Namespace(AUTHORITY + "frequency/")
FILE_TYPE = Namespace(AUTHORITY + "file-type/")
LANGUAGE = Namespace(AUTHORITY + "language/")
ACCESS_RIGHT = Namespace(AUTHORITY + "access-right/")
COUNTRY = Namespace(AUTHORITY + "country/")
PUBLISHER_TYPE = Namespace("http://purl.org/adms/publishertype/")
IANA = "http://www.iana.org/assignments/media-types/"

CC_BY = "http://creativecommons.org/licenses/by/4.0/"
CITY_ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
# The city's extent (lon, lat: west, south, east, north) where no boundary is seeded: Đà Nẵng
# after the 2025 merger, with the Hoàng Sa special zone.
CITY_BBOX = (107.210916, 14.951353, 112.716634, 17.121968)
# The version of NGSI-LD the API follows (its core @context is v1.8).
NGSI_LD_SPEC = "https://www.etsi.org/deliver/etsi_gs/CIM/001_099/009/01.08.01_60/gs_CIM009v010801p.pdf"
CAP_SPEC = "http://docs.oasis-open.org/emergency/cap/v1.2/CAP-v1.2-os.html"

# The prefixes of the JSON-LD context and of Turtle: short names a person can read.
PREFIXES = {
    "dcat": str(DCAT),
    "dct": str(DCTERMS),
    "foaf": str(FOAF),
    "vcard": str(VCARD),
    "skos": str(SKOS),
    "adms": str(ADMS),
    "geo": str(GEO),
    "rdf": str(RDF),
    "rdfs": str(RDFS),
    "xsd": str(XSD),
}

_THEME_LABELS = {
    "ENVI": "Environment",
    "TRAN": "Transport",
    "GOVE": "Government and public sector",
    "JUST": "Justice, legal system and public safety",
    "ENER": "Energy",
    "TECH": "Science and technology",
    "REGI": "Regions and cities",
}
_FREQUENCY_LABELS = {"CONT": "continuous", "HOURLY": "hourly", "DAILY": "daily", "WEEKLY": "weekly"}


@dataclass(frozen=True, slots=True)
class KindInfo:
    """How a sensor kind reads in a catalogue: its names (en, vi), its EU data theme and keywords."""

    en: str
    vi: str
    theme: str
    keywords: tuple[tuple[str, str], ...] = ()


# The kinds the city deploys; another kind is catalogued under its own name.
KINDS: dict[str, KindInfo] = {
    "air_quality": KindInfo("Air quality", "Chất lượng không khí", "ENVI", (("PM2.5", "bụi mịn PM2.5"),)),
    "water_level": KindInfo("Water level", "Mực nước", "ENVI", (("flood", "ngập lụt"),)),
    "noise": KindInfo("Noise", "Tiếng ồn", "ENVI", (("noise level", "độ ồn"),)),
    "rainfall": KindInfo("Rainfall", "Lượng mưa", "ENVI", (("weather", "thời tiết"),)),
    "traffic": KindInfo("Traffic", "Giao thông", "TRAN", (("vehicle counts", "lưu lượng xe"),)),
    "parking": KindInfo("Parking", "Bãi đỗ xe", "TRAN", (("occupancy", "tỷ lệ lấp đầy"),)),
    "street_light": KindInfo("Street lights", "Đèn đường", "ENER", (("energy", "năng lượng"),)),
}


def kind_info(kind: str) -> KindInfo:
    named = kind.replace("_", " ")
    return KINDS.get(kind) or KindInfo(named.capitalize(), named, "TECH")


@dataclass(frozen=True, slots=True)
class Span:
    """The first and last times of a dataset's data."""

    first: datetime
    last: datetime


@dataclass(frozen=True, slots=True)
class Holdings:
    """What there is to catalogue. ``kinds``: every sensor kind the public sees, with the span of its
    hourly readings (None while it has none); the others are None when they hold no data yet."""

    kinds: dict[str, Span | None]
    public_alerts: Span | None = None
    alerts: Span | None = None
    tickets: Span | None = None
    bbox: tuple[float, float, float, float] = CITY_BBOX


@dataclass(frozen=True, slots=True)
class Publisher:
    """Who answers for the catalogue (the API gives the IOC's public address, ``IOC_CAP_SENDER``, that
    already signs its public alerts) and under which licence its data are open."""

    contact_email: str
    license: str = CC_BY
    name_en: str = "Da Nang Intelligent Operations Centre"
    name_vi: str = "Trung tâm Giám sát, điều hành đô thị thông minh Đà Nẵng"


@dataclass(slots=True)
class _Dist:
    """One distribution: its title, media type (under IANA's registry), EU file type and links."""

    key: str
    title: str
    media: str
    file_type: str
    access: str
    download: str | None = None
    description: str | None = None
    conforms_to: list[URIRef] = field(default_factory=list)


def _bilingual(en: str, vi: str) -> list[Literal]:
    return [Literal(en, lang="en"), Literal(vi, lang="vi")]


def _time(t: datetime) -> Literal:
    return Literal(t.astimezone(CITY_ZONE).isoformat(timespec="seconds"), datatype=XSD.dateTime)


class _Builder:
    def __init__(self, base: str, holdings: Holdings, publisher: Publisher) -> None:
        self.base = base if base.endswith("/") else base + "/"
        self.api = self.base + "api/v1/"
        self.uri = URIRef(self.api + "open-data/catalogue")
        self.holdings, self.publisher = holdings, publisher
        self.g = Graph(bind_namespaces="core")  # rdf, rdfs, xsd, xml (RDF/XML writes xml:lang)
        for prefix, iri in PREFIXES.items():
            self.g.bind(prefix, iri)

    def node(self, name: str) -> URIRef:
        """A node of this catalogue: a fragment of its own address."""
        return URIRef(f"{self.uri}#{quote(name, safe='-_./')}")

    def add(self, subject: URIRef | BNode, predicate: URIRef, *objects: object) -> None:
        for obj in objects:
            self.g.add((subject, predicate, obj if isinstance(obj, URIRef | BNode | Literal) else Literal(obj)))

    def typed(self, iri: str, *classes: URIRef) -> URIRef:
        ref = URIRef(iri)
        for cls in classes:
            self.g.add((ref, RDF.type, cls))
        return ref

    def link(self, url: str) -> URIRef:
        return self.typed(url, RDFS.Resource)

    def concept(self, ref: URIRef, label: str, scheme: str, *classes: URIRef) -> URIRef:
        self.typed(ref, SKOS.Concept, *classes)
        self.add(ref, SKOS.prefLabel, Literal(label, lang="en"))
        self.add(ref, SKOS.inScheme, URIRef(scheme))
        return ref

    def theme(self, code: str) -> URIRef:
        return self.concept(THEME[code], _THEME_LABELS[code], AUTHORITY + "data-theme")

    def frequency(self, code: str) -> URIRef:
        return self.concept(FREQUENCY[code], _FREQUENCY_LABELS[code], AUTHORITY + "frequency", DCTERMS.Frequency)

    def build(self) -> Graph:
        h, g, cat = self.holdings, self.g, self.uri
        self.typed(cat, DCAT.Catalog)
        self.add(cat, DCTERMS.title, *_bilingual("Da Nang IOC open data", "Dữ liệu mở IOC Đà Nẵng"))
        self.add(
            cat,
            DCTERMS.description,
            *_bilingual(
                "Open data of Da Nang's Intelligent Operations Centre: hourly sensor readings by kind, public "
                "alerts in CAP 1.2, the units' response times to alerts, the civic sprint on citizens' reports, "
                "and the city's context data through NGSI-LD.",
                "Dữ liệu mở của Trung tâm Giám sát, điều hành đô thị thông minh Đà Nẵng: số liệu cảm biến theo "
                "giờ, cảnh báo công khai theo chuẩn CAP 1.2, thời gian xử lý cảnh báo của các đơn vị, kết quả xử "
                "lý phản ánh của người dân và dữ liệu ngữ cảnh qua NGSI-LD.",
            ),
        )
        self.add(cat, DCTERMS.publisher, self.agent())
        self.add(cat, DCAT.contactPoint, self.contact())
        self.add(cat, DCTERMS.license, self.license())
        self.add(cat, DCTERMS.language, *self.languages())
        self.add(cat, DCTERMS.spatial, self.city(), self.typed(COUNTRY.VNM, DCTERMS.Location))
        self.add(cat, FOAF.homepage, self.typed(self.base + "docs", FOAF.Document))
        scheme = self.typed(AUTHORITY + "data-theme", SKOS.ConceptScheme)
        self.add(scheme, DCTERMS.title, Literal("Data theme", lang="en"))
        self.add(cat, DCAT.themeTaxonomy, scheme)

        readings = [self.readings(kind, span) for kind, span in sorted(h.kinds.items())]
        others = []
        if h.public_alerts:
            others.append(self.cap(h.public_alerts))
        if h.alerts:
            others.append(self.response_times(h.alerts))
        if h.tickets:
            others.append(self.sprint(h.tickets))
        self.add(cat, DCAT.dataset, *readings, *others)
        self.add(cat, DCAT.service, self.ngsi_ld(readings))
        spans = [s for s in (*h.kinds.values(), h.public_alerts, h.alerts, h.tickets) if s]
        if spans:
            self.add(cat, DCTERMS.issued, _time(min(s.first for s in spans)))
            self.add(cat, DCTERMS.modified, _time(max(s.last for s in spans)))
        return g

    # The parts every dataset shares.

    def agent(self) -> URIRef:
        agent = self.typed(self.node("publisher"), FOAF.Agent, FOAF.Organization)
        self.add(agent, FOAF.name, *_bilingual(self.publisher.name_en, self.publisher.name_vi))
        local = self.concept(PUBLISHER_TYPE.LocalAuthority, "Local Authority", "http://purl.org/adms/publishertype/1.0")
        self.add(agent, DCTERMS.type, local)
        return agent

    def contact(self) -> URIRef:
        contact = self.typed(self.node("contact"), VCARD.Organization, VCARD.Kind)
        self.add(contact, VCARD.fn, Literal(self.publisher.name_en, lang="en"))
        self.add(contact, VCARD.hasEmail, URIRef("mailto:" + self.publisher.contact_email))
        return contact

    def license(self) -> URIRef:
        return self.typed(self.publisher.license, DCTERMS.LicenseDocument)

    def languages(self) -> list[URIRef]:
        return [self.typed(LANGUAGE.VIE, DCTERMS.LinguisticSystem), self.typed(LANGUAGE.ENG, DCTERMS.LinguisticSystem)]

    def city(self) -> URIRef:
        city = self.typed(self.node("da-nang"), DCTERMS.Location)
        self.add(city, RDFS.label, Literal("Đà Nẵng", lang="vi"), Literal("Da Nang", lang="en"))
        west, south, east, north = self.holdings.bbox
        corners = f"{west} {south}, {east} {south}, {east} {north}, {west} {north}, {west} {south}"
        self.add(city, DCAT.bbox, Literal(f"POLYGON(({corners}))", datatype=GEO.wktLiteral))
        return city

    def period(self, span: Span) -> BNode:
        period = BNode()
        self.g.add((period, RDF.type, DCTERMS.PeriodOfTime))
        self.add(period, DCAT.startDate, _time(span.first))
        self.add(period, DCAT.endDate, _time(span.last))
        return period

    def dataset(
        self,
        key: str,
        titles: tuple[str, str],
        descriptions: tuple[str, str],
        span: Span | None,
        frequency: str,
        themes: tuple[str, ...],
        keywords: list[tuple[str, str]],
        distributions: list[_Dist],
    ) -> URIRef:
        ds = self.typed(self.node(f"dataset/{key}"), DCAT.Dataset)
        self.add(ds, DCTERMS.identifier, Literal(f"danang-ioc/{key}"))
        self.add(ds, DCTERMS.title, *_bilingual(*titles))
        self.add(ds, DCTERMS.description, *_bilingual(*descriptions))
        self.add(ds, DCTERMS.publisher, self.agent())
        self.add(ds, DCAT.contactPoint, self.contact())
        self.add(ds, DCTERMS.spatial, self.city())
        self.add(ds, DCTERMS.language, *self.languages())
        self.add(ds, DCTERMS.accessRights, self.typed(ACCESS_RIGHT.PUBLIC, DCTERMS.RightsStatement))
        self.add(ds, DCTERMS.accrualPeriodicity, self.frequency(frequency))
        self.add(ds, DCAT.theme, *(self.theme(t) for t in themes))
        for en, vi in [*keywords, ("Da Nang", "Đà Nẵng"), ("open data", "dữ liệu mở")]:
            self.add(ds, DCAT.keyword, *_bilingual(en, vi))
        if span:
            self.add(ds, DCTERMS.temporal, self.period(span))
            self.add(ds, DCTERMS.issued, _time(span.first))
            self.add(ds, DCTERMS.modified, _time(span.last))
        for d in distributions:
            dist = self.typed(self.node(f"dataset/{key}/{d.key}"), DCAT.Distribution)
            self.add(dist, DCTERMS.title, Literal(d.title, lang="en"))
            if d.description:
                self.add(dist, DCTERMS.description, Literal(d.description, lang="en"))
            self.add(dist, DCAT.accessURL, self.link(d.access))
            if d.download:
                self.add(dist, DCAT.downloadURL, self.link(d.download))
            self.add(dist, DCAT.mediaType, self.typed(IANA + d.media, DCTERMS.MediaType))
            self.add(dist, DCTERMS.format, self.typed(FILE_TYPE[d.file_type], DCTERMS.MediaTypeOrExtent))
            self.add(dist, DCTERMS.license, self.license())
            for standard in d.conforms_to:
                self.add(dist, DCTERMS.conformsTo, standard)
            self.add(ds, DCAT.distribution, dist)
        return ds

    def tables(
        self, path: str, params: dict[str, str], title: str, key: str = "", description: str | None = None
    ) -> list[_Dist]:
        """The CSV and JSON distributions of an open endpoint that takes ``format``."""
        made = []
        for fmt, media, file_type in (("csv", "text/csv", "CSV"), ("json", "application/json", "JSON")):
            url = f"{self.api}{path}?{urlencode({**params, 'format': fmt})}"
            name = f"{key}-{fmt}" if key else fmt
            made.append(_Dist(name, f"{title} ({file_type})", media, file_type, url, url, description))
        return made

    # The datasets.

    def readings(self, kind: str, span: Span | None) -> URIRef:
        info = kind_info(kind)
        ds = self.dataset(
            f"readings/{kind}",
            (f"{info.en} readings, hourly", f"Số liệu {info.vi.lower()} theo giờ"),
            (
                f"Hourly mean, minimum and maximum of every metric of the city's {info.en.lower()} sensors, with "
                "the number of readings each hour, by sensor and administrative unit. Sensors of drills are left out.",
                f"Giá trị trung bình, nhỏ nhất và lớn nhất theo giờ của từng chỉ số đo của các cảm biến "
                f"{info.vi.lower()} trong thành phố, kèm số lần đo mỗi giờ, theo cảm biến và đơn vị hành chính.",
            ),
            span,
            "HOURLY",
            (info.theme, "REGI"),
            [(info.en.lower(), info.vi.lower()), ("sensors", "cảm biến"), *info.keywords],
            self.tables(
                "open-data/readings",
                {"kind": kind},
                "Hourly readings of a day",
                description="Yesterday's hours (Asia/Ho_Chi_Minh); add date=YYYY-MM-DD for another day. "
                "Columns: time, sensor_id, unit_id, metric, mean, min, max, samples.",
            ),
        )
        self.add(ds, DCAT.temporalResolution, Literal("PT1H", datatype=XSD.duration))
        return ds

    def cap(self, span: Span) -> URIRef:
        feed = self.api + "open-data/cap.atom"
        cap = self.typed(CAP_SPEC, DCTERMS.Standard)
        self.add(cap, DCTERMS.title, Literal("OASIS Common Alerting Protocol 1.2", lang="en"))
        return self.dataset(
            "public-alerts",
            ("Public alerts (CAP 1.2)", "Cảnh báo công khai (CAP 1.2)"),
            (
                "The city's active public alerts (floods, air pollution, heavy rain...) as an Atom feed whose "
                "entries link to one OASIS CAP 1.2 document per alert; a resolved alert's document is a Cancel.",
                "Các cảnh báo công khai đang hiệu lực của thành phố (ngập, ô nhiễm không khí, mưa lớn...) dưới "
                "dạng nguồn tin Atom, mỗi mục dẫn tới một văn bản CAP 1.2.",
            ),
            span,
            "CONT",
            ("JUST", "ENVI"),
            [("alerts", "cảnh báo"), ("CAP", "CAP"), ("early warning", "cảnh báo sớm")],
            [
                _Dist("atom", "Active public alerts (Atom)", "application/atom+xml", "ATOM", feed, feed),
                _Dist(
                    "cap",
                    "One CAP 1.2 document per alert (XML)",
                    "application/xml",
                    "XML",
                    feed,
                    description="Each entry of the Atom feed links to its alert's CAP 1.2 document.",
                    conforms_to=[cap],
                ),
            ],
        )

    def response_times(self, span: Span) -> URIRef:
        return self.dataset(
            "response-times",
            ("Response times to alerts", "Thời gian xử lý cảnh báo"),
            (
                "How fast each unit acknowledges and resolves its alerts, per week and severity: counts and "
                "durations only (the last 30 days by default; period, start, end and unit select others). "
                "Drills are left out.",
                "Tốc độ tiếp nhận và xử lý cảnh báo của từng đơn vị theo tuần và mức độ: chỉ số lượng và thời "
                "gian (mặc định 30 ngày gần nhất).",
            ),
            span,
            "DAILY",
            ("GOVE", "JUST"),
            [("response time", "thời gian phản hồi"), ("alerts", "cảnh báo")],
            self.tables("open-data/response-times", {}, "Response times per unit, week and severity"),
        )

    def sprint(self, span: Span) -> URIRef:
        return self.dataset(
            "civic-sprint",
            ("Civic sprint: citizens' reports handled", "Kết quả xử lý phản ánh của người dân"),
            (
                "Citizens' reports received, resolved, resolved by their deadline, working hours to resolve "
                "and overdue, per unit, category and month (the last 30 days by default); and the units ranked. "
                "Nothing personal is in it; drills are left out.",
                "Số phản ánh của người dân đã tiếp nhận, đã xử lý, xử lý đúng hạn, số giờ làm việc để xử lý và "
                "quá hạn, theo đơn vị, lĩnh vực và tháng; cùng bảng xếp hạng các đơn vị.",
            ),
            span,
            "DAILY",
            ("GOVE", "REGI"),
            [("citizens' reports", "phản ánh hiện trường"), ("public service", "dịch vụ công")],
            [
                *self.tables("open/sprint", {}, "Reports handled per unit, category and month", "figures"),
                *self.tables("open/sprint/ranking", {}, "The units ranked", "ranking"),
            ],
        )

    def ngsi_ld(self, datasets: list[URIRef]) -> URIRef:
        service = self.typed(self.node("service/ngsi-ld"), DCAT.DataService)
        self.add(service, DCTERMS.title, *_bilingual("NGSI-LD context information API", "API dữ liệu ngữ cảnh NGSI-LD"))
        self.add(
            service,
            DCTERMS.description,
            *_bilingual(
                "The city's latest observations, public alerts and administrative units as NGSI-LD entities of the "
                "Smart Data Models (ETSI GS CIM 009): entities, types, attributes and their history (temporal API); the"
                " open subset needs no token.",
                "Các quan trắc mới nhất, cảnh báo công khai và đơn vị hành chính của thành phố dưới dạng thực thể "
                "NGSI-LD theo Smart Data Models.",
            ),
        )
        self.add(service, DCAT.endpointURL, self.link(self.base + "ngsi-ld/v1"))
        self.add(service, DCAT.endpointDescription, self.link(self.base + "openapi.json"))
        spec = self.typed(NGSI_LD_SPEC, DCTERMS.Standard)
        self.add(spec, DCTERMS.title, Literal("ETSI GS CIM 009 V1.8.1: NGSI-LD API", lang="en"))
        self.add(service, DCTERMS.conformsTo, spec)
        self.add(service, DCTERMS.publisher, self.agent())
        self.add(service, DCAT.contactPoint, self.contact())
        self.add(service, DCTERMS.license, self.license())
        self.add(service, DCTERMS.accessRights, self.typed(ACCESS_RIGHT.PUBLIC, DCTERMS.RightsStatement))
        self.add(service, DCAT.theme, self.theme("REGI"), self.theme("TECH"))
        for en, vi in (("NGSI-LD", "NGSI-LD"), ("smart city", "đô thị thông minh"), ("FIWARE", "FIWARE")):
            self.add(service, DCAT.keyword, *_bilingual(en, vi))
        self.add(service, DCAT.servesDataset, *datasets)
        return service


def build_catalogue(base: str, holdings: Holdings, publisher: Publisher) -> Graph:
    """The catalogue as an RDF graph, its links under ``base`` (the API's root URL, e.g.
    ``https://ioc.danang.gov.vn/``)."""
    return _Builder(base, holdings, publisher).build()


# How each representation is asked for (``?format=``) and served.
FORMATS = {
    "jsonld": ("application/ld+json", "json-ld"),
    "ttl": ("text/turtle", "turtle"),
    "rdf": ("application/rdf+xml", "pretty-xml"),
}


def serialize(graph: Graph, fmt: str) -> str:
    """``graph`` as JSON-LD (compacted with ``PREFIXES``), Turtle or RDF/XML."""
    _, rdflib_format = FORMATS[fmt]
    if rdflib_format == "json-ld":
        return graph.serialize(format="json-ld", context=PREFIXES, auto_compact=True)
    return graph.serialize(format=rdflib_format)
